#include "common/engine/backend.h"

#include "absl/strings/str_cat.h"

namespace pdserve::engine {

absl::StatusOr<Device> ParseDevice(std::string_view name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", std::string(name), "': choose cpu or cuda"));
}

absl::StatusOr<CudaDtype> ParseCudaDtype(std::string_view name) {
  if (name == "auto") return CudaDtype::kAuto;
  if (name == "f32") return CudaDtype::kF32;
  if (name == "bf16") return CudaDtype::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", std::string(name), "': choose auto, f32 or bf16"));
}

const char* DeviceName(Device device) { return device == Device::kCuda ? "cuda" : "cpu"; }

}  // namespace pdserve::engine
