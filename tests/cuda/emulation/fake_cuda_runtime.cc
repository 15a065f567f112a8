// The few CUDA runtime calls the kernels and their tests make, implemented on the host for the
// emulation build (tests/cuda/emulation): "device" memory is host memory, a launch runs to
// completion inside the call (kernels/cuda/host_emulation.h), so every synchronization succeeds.
// Linked instead of libcudart, never beside it.

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/host_emulation.h"

namespace emu = ::pdserve::kernels::gpu::emu;

struct CUgraph_st {
  emu::CapturedWork work;
};
struct CUgraphExec_st {
  emu::CapturedWork work;
};

namespace {
thread_local cudaError_t last_error = cudaSuccess;
thread_local CUgraph_st* capturing_graph = nullptr;

cudaError_t Record(cudaError_t err) {
  if (err != cudaSuccess) last_error = err;
  return err;
}
}  // namespace

extern "C" {

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    default: *value = 0; return cudaSuccess;
  }
}

cudaError_t CUDARTAPI cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
  std::memset(prop, 0, sizeof *prop);
  std::strcpy(prop->name, "host emulation");
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->totalGlobalMem = size_t{1} << 34;
  prop->l2CacheSize = 50 << 20;
  return cudaSuccess;
}

const char* CUDARTAPI cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    default: return "emulated CUDA error";
  }
}

const char* CUDARTAPI cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    default: return "cudaErrorUnknown";
  }
}

cudaError_t CUDARTAPI cudaGetLastError(void) {
  const cudaError_t err = last_error;
  last_error = cudaSuccess;
  return err;
}

cudaError_t CUDARTAPI cudaPeekAtLastError(void) { return last_error; }

cudaError_t CUDARTAPI cudaMalloc(void** ptr, size_t size) {
  // Exactly `size` bytes (AddressSanitizer then sees any access past them), 256-byte aligned as
  // cudaMalloc's are.
  if (posix_memalign(ptr, 256, size == 0 ? 1 : size) != 0) {
    *ptr = nullptr;
    return Record(cudaErrorMemoryAllocation);
  }
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMallocHost(void** ptr, size_t size) {
  *ptr = std::malloc(size == 0 ? 1 : size);
  return *ptr == nullptr ? Record(cudaErrorMemoryAllocation) : cudaSuccess;
}

cudaError_t CUDARTAPI cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpy(void* dst, const void* src, size_t count, enum cudaMemcpyKind) {
  if (count > 0) std::memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count,
                                      enum cudaMemcpyKind kind, cudaStream_t) {
  if (emu::Capturing()) {
    // As CUDA: no copy between the device and pageable host memory inside a graph (the fake
    // cannot tell pinned from pageable memory, so every host copy is refused).
    if (kind != cudaMemcpyDeviceToDevice) return Record(cudaErrorStreamCaptureUnsupported);
    emu::Record([=] { std::memmove(dst, src, count); });
    return cudaSuccess;
  }
  if (count > 0) std::memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemset(void* dst, int value, size_t count) {
  std::memset(dst, value, count);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemsetAsync(void* dst, int value, size_t count, cudaStream_t) {
  if (emu::Capturing()) {
    emu::Record([=] { std::memset(dst, value, count); });
    return cudaSuccess;
  }
  std::memset(dst, value, count);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

// A stream is an owned token (work runs inside the launching call, so there is nothing to
// order); AddressSanitizer pairs each create with its destroy.
cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = reinterpret_cast<cudaStream_t>(new char[1]);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t stream) {
  delete[] reinterpret_cast<char*>(stream);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFuncSetAttribute(const void*, enum cudaFuncAttribute, int) {
  return cudaSuccess;
}

// Graphs: a captured graph is the list of work recorded while the capture was open; an
// executable graph is a copy of it, replayed in order by cudaGraphLaunch. Synchronous calls
// (cudaMemcpy, cudaMemset, cudaStreamSynchronize, ...) inside a capture are not checked.
cudaError_t CUDARTAPI cudaStreamBeginCapture(cudaStream_t, enum cudaStreamCaptureMode) {
  auto* graph = new CUgraph_st();
  if (!emu::BeginCapture(&graph->work)) {
    delete graph;
    return Record(cudaErrorIllegalState);
  }
  capturing_graph = graph;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamEndCapture(cudaStream_t, cudaGraph_t* graph) {
  if (!emu::EndCapture()) return Record(cudaErrorIllegalState);
  *graph = capturing_graph;
  capturing_graph = nullptr;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                           unsigned long long) {
  if (graph == nullptr) return Record(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->work};
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
  if (exec == nullptr) return Record(cudaErrorInvalidValue);
  for (const auto& work : exec->work) work();
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

}  // extern "C"
