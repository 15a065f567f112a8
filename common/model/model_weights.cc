#include "common/model/model_weights.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace pdserve::model {

absl::Status ValidateModelConfig(const ModelConfig& c, const std::string& source) {
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", parts...));
  };
  const std::pair<const char*, int> positive[] = {
      {"n_layers", c.n_layers},     {"dim", c.dim},
      {"hidden_dim", c.hidden_dim}, {"n_heads", c.n_heads},
      {"n_kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim},
      {"rotary_dim", c.rotary_dim}, {"vocab_size", c.vocab_size},
      {"context_length", c.context_length},
  };
  for (const auto& [name, value] : positive) {
    if (value <= 0) return error(name, " is ", value, ", must be positive");
  }
  if (static_cast<int64_t>(c.n_heads) * c.head_dim != c.dim) {
    return error("dim ", c.dim, " is not n_heads ", c.n_heads, " x head_dim ", c.head_dim);
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    return error("n_heads ", c.n_heads, " is not a multiple of n_kv_heads ", c.n_kv_heads);
  }
  if (c.rotary_dim % 2 != 0 || c.rotary_dim > c.head_dim) {
    return error("rotary_dim ", c.rotary_dim, " must be even and at most head_dim ", c.head_dim);
  }
  if (!std::isfinite(c.rope_base) || c.rope_base <= 0) {
    return error("rope_base ", c.rope_base, " must be finite and positive");
  }
  if (!std::isfinite(c.rms_eps) || c.rms_eps <= 0) {
    return error("rms_eps ", c.rms_eps, " must be finite and positive");
  }
  return absl::OkStatus();
}

}  // namespace pdserve::model
