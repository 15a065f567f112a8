#pragma once
// SmolLM2-135M-Instruct's shapes (from its GGUF), which the GPU benchmarks run at with random
// weights: the model file does not fit the GPU machine's file transfer.

namespace pdserve::bench::smollm2 {

inline constexpr int kLayers = 30;
inline constexpr int kDim = 576;
inline constexpr int kHidden = 1536;
inline constexpr int kHeads = 9;
inline constexpr int kKvHeads = 3;
inline constexpr int kHeadDim = 64;
inline constexpr int kVocab = 49152;
inline constexpr int kContext = 8192;
inline constexpr float kRopeBase = 100000.0f;
inline constexpr float kRmsEps = 1e-5f;

}  // namespace pdserve::bench::smollm2
