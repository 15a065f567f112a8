#pragma once
// Which instruction-set variant of the CPU kernels runs. Chosen once at start-up (the best the
// CPU supports) and forceable from the command line (`--kernels=scalar`) for tests.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pdserve::kernels {

enum class Isa { kScalar, kAvx2, kAvx512 };

// The best variant this CPU and this build support.
Isa DetectBestIsa();

// Parses "auto" | "scalar" | "avx2" | "avx512". A variant the CPU cannot run is an error.
absl::StatusOr<Isa> ParseIsa(absl::string_view name);

std::string IsaName(Isa isa);

}  // namespace pdserve::kernels
