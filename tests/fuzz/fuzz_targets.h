#pragma once
// The fuzz targets of tests/fuzz (docs/fuzzing.md). Each target is a pair of plain functions, so
// that the same code runs under libFuzzer (clang, deploy/fuzz.sh: PDSERVE_FUZZ_TARGET defines
// libFuzzer's entry points) and under the normal build, where fuzz_replay_test feeds it the
// committed seeds and crashers.
//
// Init runs once: false when what the target needs is absent (the model files), after printing
// why; the target is then skipped. OneInput returns 0 and never crashes, leaks or hits UB: a
// violated invariant calls FuzzCheckFailed, which aborts.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "common/kv/kv_layout.h"
#include "common/request/request_contract.h"

namespace pdserve::fuzz {

struct FuzzTarget {
  const char* name;  // the corpus folder and deploy/fuzz.sh's name
  bool (*init)();
  int (*one_input)(const uint8_t* data, size_t size);
};

bool InitGgufFuzz();
int GgufFuzz(const uint8_t* data, size_t size);
bool InitGenerateRequestFuzz();
int GenerateRequestFuzz(const uint8_t* data, size_t size);
bool InitWorkerRequestFuzz();
int WorkerRequestFuzz(const uint8_t* data, size_t size);
bool InitKvChunksFuzz();
int KvChunksFuzz(const uint8_t* data, size_t size);
bool InitRegistryFuzz();
int RegistryFuzz(const uint8_t* data, size_t size);
bool InitTokenizerFuzz();
int TokenizerFuzz(const uint8_t* data, size_t size);
bool InitChatTemplateFuzz();
int ChatTemplateFuzz(const uint8_t* data, size_t size);

inline constexpr FuzzTarget kFuzzTargets[] = {
    {"gguf", InitGgufFuzz, GgufFuzz},
    {"generate_request", InitGenerateRequestFuzz, GenerateRequestFuzz},
    {"worker_request", InitWorkerRequestFuzz, WorkerRequestFuzz},
    {"kv_chunks", InitKvChunksFuzz, KvChunksFuzz},
    {"registry", InitRegistryFuzz, RegistryFuzz},
    {"tokenizer", InitTokenizerFuzz, TokenizerFuzz},
    {"chat_template", InitChatTemplateFuzz, ChatTemplateFuzz},
};

// Aborts naming the broken invariant (libFuzzer keeps the input as a crasher).
[[noreturn]] inline void FuzzCheckFailed(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what.c_str());
  std::abort();
}
#define PDSERVE_FUZZ_CHECK(cond, what) \
  do {                                 \
    if (!(cond)) ::pdserve::fuzz::FuzzCheckFailed(__FILE__, __LINE__, (what)); \
  } while (0)

// The worker the message targets pretend to be (the seed maker writes inputs for it): a tiny KV
// layout (256-byte blocks) and the limits and fingerprint of a small model.
inline kv::KvLayout FuzzLayout() {
  kv::KvLayout layout;
  layout.n_layers = 2;
  layout.n_kv_heads = 2;
  layout.head_dim = 4;
  layout.block_size = 4;
  return layout;
}
inline constexpr request::ModelLimits kFuzzLimits{/*context_length=*/64, /*vocab_size=*/512};
inline constexpr absl::string_view kFuzzFingerprint = "fuzz-model-fingerprint";
inline constexpr int64_t kFuzzPoolBlocks = 32;
// The request the kv_chunks target reserves KV for.
inline constexpr absl::string_view kFuzzRequestId = "fuzz-request";
// The kv_chunks target's flags byte (kv_chunks_fuzz.cc says what each does).
inline constexpr uint8_t kKvChunksRealToken = 1, kKvChunksFixChecksums = 2, kKvChunksShuffle = 4,
                         kKvChunksGrpcOnly = 8;

// Model files: ../shared/models (PDSERVE_SHARED_DIR) and the checkout's models/ (PDSERVE_ROOT,
// or PDSERVE_MODELS_DIR), from the environment or else the build's defaults.
std::string SharedModelPath(absl::string_view file_name);  // stories260K.bin, tok512.bin
std::string SmolLm2Path();  // may not exist
bool FileExists(const std::string& path);

}  // namespace pdserve::fuzz

#ifdef PDSERVE_LIBFUZZER
// libFuzzer's entry points for one target; a target whose Init fails exits 0 (skipped).
#define PDSERVE_FUZZ_TARGET(init, one_input)                                   \
  extern "C" int LLVMFuzzerInitialize(int*, char***) {                          \
    if (!init()) std::exit(0);                                                  \
    return 0;                                                                   \
  }                                                                             \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {     \
    return one_input(data, size);                                               \
  }
#else
#define PDSERVE_FUZZ_TARGET(init, one_input)
#endif
