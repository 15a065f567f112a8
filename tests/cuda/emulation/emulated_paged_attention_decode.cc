// The kernels of kernels/cuda/paged_attention_decode.cu compiled as host C++ over the CUDA host emulation.
#include "kernels/cuda/paged_attention_decode.cu"  // NOLINT(build/include)
