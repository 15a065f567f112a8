#include "common/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"

namespace pdserve::sampling {
namespace {

// splitmix64's finaliser: a bijective 64-bit mix with full avalanche.
uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Lowest id among the largest values; NaN never wins. 0 when every value is NaN.
int32_t Argmax(const std::vector<float>& values) {
  int32_t best = -1;
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) continue;
    if (best < 0 || values[i] > values[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& params) {
  if (!std::isfinite(params.temperature) || params.temperature < 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat(
        "temperature is ", params.temperature, ", must be finite and >= 0 (0 = greedy)"));
  }
  if (params.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k is ", params.top_k, ", must be >= 0 (0 = off)"));
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {  // also rejects NaN
    return absl::InvalidArgumentError(
        absl::StrCat("top_p is ", params.top_p, ", must be in (0, 1]"));
  }
  if (!std::isfinite(params.repetition_penalty) || params.repetition_penalty <= 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat("repetition_penalty is ",
                                                   params.repetition_penalty,
                                                   ", must be finite and > 0 (1 = off)"));
  }
  return absl::OkStatus();
}

double UniformForPosition(uint64_t seed, int64_t position) {
  // Counter-based: the stream for a seed is Mix64 of a Weyl sequence keyed by the mixed seed, so
  // (seed, position) alone fixes the number and nearby seeds or positions are uncorrelated.
  const uint64_t counter = static_cast<uint64_t>(position) * 0x9E3779B97F4A7C15ULL;
  const uint64_t bits = Mix64(Mix64(seed) + counter);
  return static_cast<double>(bits >> 11) * 0x1.0p-53;  // 53 random bits: [0, 1)
}

int32_t SampleToken(absl::Span<const float> logits, const SamplingParams& params, int64_t position,
                    absl::Span<const int32_t> previous_tokens) {
  const size_t n_vocab = logits.size();
  if (n_vocab == 0) return 0;
  std::vector<float> adjusted(logits.begin(), logits.end());

  if (params.repetition_penalty != 1.0f && !previous_tokens.empty()) {
    // Each distinct previous token is penalised once, however often it occurred.
    std::vector<bool> penalised(n_vocab, false);
    for (int32_t token : previous_tokens) {
      if (token < 0 || static_cast<size_t>(token) >= n_vocab) continue;
      if (penalised[static_cast<size_t>(token)]) continue;
      penalised[static_cast<size_t>(token)] = true;
      float& logit = adjusted[static_cast<size_t>(token)];
      logit = logit > 0.0f ? logit / params.repetition_penalty : logit * params.repetition_penalty;
    }
  }

  if (params.temperature == 0.0f) return Argmax(adjusted);

  // Softmax at this temperature; exp((l - max) / T) never overflows.
  const int32_t best = Argmax(adjusted);
  const double max_logit = adjusted[static_cast<size_t>(best)];
  if (!std::isfinite(max_logit)) return best;  // +inf dominates; all -inf/NaN: nothing to draw
  // Unnormalised: the largest is 1. The exponent is formed in double (no overflow for tiny
  // temperatures) and exponentiated in float, which is several times faster over a vocabulary.
  std::vector<double> probs(n_vocab);
  for (size_t i = 0; i < n_vocab; ++i) {
    const double x = (static_cast<double>(adjusted[i]) - max_logit) /
                     static_cast<double>(params.temperature);
    const float p = x < -104.0 ? 0.0f : std::exp(static_cast<float>(x));  // expf(-104) is 0
    probs[i] = std::isnan(p) ? 0.0 : p;
  }

  if (params.top_k == 0 && params.top_p >= 1.0f) {
    // No truncation: walk the CDF in id order.
    double total = 0.0;
    for (double p : probs) total += p;
    const double r = UniformForPosition(params.seed, position) * total;
    double cumulative = 0.0;
    int32_t last_with_mass = best;
    for (size_t i = 0; i < n_vocab; ++i) {
      if (probs[i] <= 0.0) continue;
      cumulative += probs[i];
      last_with_mass = static_cast<int32_t>(i);
      if (r < cumulative) return last_with_mass;
    }
    return last_with_mass;  // rounding put r at the very top
  }

  // Candidates in the order the CDF walks them: by probability descending, ties to the lower id.
  // Tokens with no mass can never be drawn and are left out; only the front that can be kept
  // is sorted.
  struct Candidate {
    double prob;
    int32_t id;
  };
  const auto before = [](const Candidate& a, const Candidate& b) {
    return a.prob > b.prob || (a.prob == b.prob && a.id < b.id);
  };
  std::vector<Candidate> candidates;
  candidates.reserve(n_vocab);
  for (size_t i = 0; i < n_vocab; ++i) {
    if (probs[i] > 0.0) candidates.push_back({probs[i], static_cast<int32_t>(i)});
  }
  // Sorts candidates[begin, end) so that its first m - begin are the most probable, in order.
  const auto sort_front = [&candidates, &before](size_t begin, size_t m, size_t end) {
    const auto first = candidates.begin();
    if (m < end) std::nth_element(first + begin, first + m, first + end, before);
    std::sort(first + begin, first + m, before);
  };

  size_t n_keep = candidates.size();
  size_t n_sorted = 0;
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < n_keep) {
    n_keep = static_cast<size_t>(params.top_k);
    sort_front(0, n_keep, candidates.size());
    n_sorted = n_keep;
  }
  double kept_mass = 0.0;
  for (size_t i = 0; i < n_keep; ++i) kept_mass += candidates[i].prob;

  if (params.top_p < 1.0f) {
    // The smallest prefix whose share of the (top-k) mass reaches top_p; at least one token.
    // Sort a growing front until it reaches the target: usually far fewer than the vocabulary.
    const double target = static_cast<double>(params.top_p) * kept_mass;
    double cumulative = 0.0;
    size_t n = 0;
    while (n == 0 || cumulative < target) {
      if (n == n_sorted) {
        if (n_sorted == n_keep) break;  // rounding: the whole set falls short of the target
        const size_t grown = std::min(n_keep, std::max<size_t>(64, n_sorted * 8));
        sort_front(n_sorted, grown, n_keep);
        n_sorted = grown;
      }
      cumulative += candidates[n].prob;
      ++n;
    }
    n_keep = n;
    kept_mass = cumulative;
  }

  // Inverse CDF over the kept candidates.
  const double r = UniformForPosition(params.seed, position) * kept_mass;
  double cumulative = 0.0;
  for (size_t i = 0; i < n_keep; ++i) {
    cumulative += candidates[i].prob;
    if (r < cumulative) return candidates[i].id;
  }
  return n_keep > 0 ? candidates[n_keep - 1].id : best;  // rounding put r at the very top
}

}  // namespace pdserve::sampling
