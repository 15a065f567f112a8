// The kernels of kernels/cuda/paged_attention_prefill.cu compiled as host C++ over the CUDA host emulation.
#include "kernels/cuda/paged_attention_prefill.cu"  // NOLINT(build/include)
