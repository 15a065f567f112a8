#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace pdserve::kernels {

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum_squares = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_squares += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_squares / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * weight[i];
}

// Angles in double precision: pos * base^(-2i / rotary_dim) loses nothing up to long contexts.
void RopeInterleaved(float* v, int n_heads, int head_dim, int rotary_dim, int64_t pos,
                     float base) {
  const int n_pairs = rotary_dim / 2;
  constexpr int kStackPairs = 256;
  double stack_cos_sin[2 * kStackPairs];
  std::vector<double> heap_cos_sin;
  double* cos_sin = stack_cos_sin;
  if (n_pairs > kStackPairs) {
    heap_cos_sin.resize(2 * static_cast<size_t>(n_pairs));
    cos_sin = heap_cos_sin.data();
  }
  for (int i = 0; i < n_pairs; ++i) {
    const double inv_freq = std::pow(static_cast<double>(base), -2.0 * i / rotary_dim);
    const double angle = static_cast<double>(pos) * inv_freq;
    cos_sin[2 * i] = std::cos(angle);
    cos_sin[2 * i + 1] = std::sin(angle);
  }
  for (int h = 0; h < n_heads; ++h) {
    float* head = v + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < n_pairs; ++i) {
      const double c = cos_sin[2 * i], s = cos_sin[2 * i + 1];
      const double v0 = head[2 * i], v1 = head[2 * i + 1];
      head[2 * i] = static_cast<float>(v0 * c - v1 * s);
      head[2 * i + 1] = static_cast<float>(v0 * s + v1 * c);
    }
  }
}

void SwiGlu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float max_value = x[0];
  for (int64_t i = 1; i < n; ++i) max_value = std::max(max_value, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv_sum;
}

void AddInPlace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace pdserve::kernels
