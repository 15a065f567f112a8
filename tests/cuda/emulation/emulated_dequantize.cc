// The kernels of kernels/cuda/dequantize.cu compiled as host C++ over the CUDA host emulation.
#include "kernels/cuda/dequantize.cu"  // NOLINT(build/include)
