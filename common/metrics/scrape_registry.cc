#include "common/metrics/scrape_registry.h"

#include <utility>

#include "prometheus/text_serializer.h"

namespace pdserve::metrics {

void ScrapeRegistry::AddRefresher(std::function<void()> refresh) {
  absl::MutexLock lock(&mu_);
  refreshers_.push_back(std::move(refresh));
}

std::string ScrapeRegistry::RenderText() const {
  absl::MutexLock lock(&mu_);
  for (const std::function<void()>& refresh : refreshers_) refresh();
  return prometheus::TextSerializer().Serialize(registry_.Collect());
}

}  // namespace pdserve::metrics
