#pragma once
// Element-wise and row-wise operations of a LLaMA decoder on f32 vectors.

#include <cstdint>

namespace pdserve::kernels {

// out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i], for i in [0, n). out may alias x.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// Rotates interleaved pairs (v[2i], v[2i+1]) of each of n_heads heads of head_dim elements by
// angle pos * base^(-2i / rotary_dim), for 2i < rotary_dim (the GGUF `llama` convention).
// v is (n_heads, head_dim), rotated in place.
void RopeInterleaved(float* v, int n_heads, int head_dim, int rotary_dim, int64_t pos, float base);

// gate[i] = silu(gate[i]) * up[i], for i in [0, n).
void SwiGlu(float* gate, const float* up, int64_t n);

// In-place softmax over x[0, n).
void Softmax(float* x, int64_t n);

// x[i] += y[i].
void AddInPlace(float* x, const float* y, int64_t n);

}  // namespace pdserve::kernels
