#include "kernels/cpu/isa.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/isa_kernels.h"

namespace pdserve::kernels {
namespace {

// Each test matches the -m flags its variant's unit is compiled with (kernels/cpu/CMakeLists.txt).
// __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
bool CpuRunsAvx2() {
#if defined(PDSERVE_KERNELS_AVX2)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool CpuRunsAvx512() {
#if defined(PDSERVE_KERNELS_AVX512)
  return CpuRunsAvx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

}  // namespace

Isa DetectBestIsa() {
  static const Isa best = CpuRunsAvx512() ? Isa::kAvx512 : CpuRunsAvx2() ? Isa::kAvx2 : Isa::kScalar;
  return best;
}

absl::StatusOr<Isa> ParseIsa(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "auto") return DetectBestIsa();
  if (lower == "scalar") return Isa::kScalar;
  if (lower == "avx2") {
    if (!CpuRunsAvx2()) {
      return absl::FailedPreconditionError(
          "kernels 'avx2': this CPU or build lacks AVX2, FMA or F16C");
    }
    return Isa::kAvx2;
  }
  if (lower == "avx512") {
    if (!CpuRunsAvx512()) {
      return absl::FailedPreconditionError(
          "kernels 'avx512': this CPU or build lacks AVX-512 F/BW/VL/DQ");
    }
    return Isa::kAvx512;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "kernels '", name, "' is not one of auto, scalar, avx2, avx512"));
}

std::string IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

namespace internal {

const IsaKernels& KernelsFor(Isa isa) {
#if defined(PDSERVE_KERNELS_AVX512)
  if (isa == Isa::kAvx512) return Avx512Kernels();
#endif
#if defined(PDSERVE_KERNELS_AVX2)
  if (isa == Isa::kAvx2) return Avx2Kernels();
#endif
  return ScalarKernels();
}

}  // namespace internal
}  // namespace pdserve::kernels
