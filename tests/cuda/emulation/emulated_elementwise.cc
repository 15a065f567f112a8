// The kernels of kernels/cuda/elementwise.cu compiled as host C++ over the CUDA host emulation.
#include "kernels/cuda/elementwise.cu"  // NOLINT(build/include)
