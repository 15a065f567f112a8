// The kernels of kernels/cuda/kv_blocks.cu compiled as host C++ over the CUDA host emulation.
#include "kernels/cuda/kv_blocks.cu"  // NOLINT(build/include)
