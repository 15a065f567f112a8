#pragma once
// An in-memory KvReservationTable for the transfer layer's tests: reservations over a real
// KvBlockPool, with the contract of reservation_table.h (pins keep an ended reservation's blocks
// until the last Unpin) and a record of what happened to each, without a decode scheduler.

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/reservation_table.h"

namespace pdserve::kv_transfer::testing {

class FakeReservationTable final : public KvReservationTable {
 public:
  enum class State { kAwaiting, kComplete, kFailed };

  // `pool` outlives the table; its layout is the table's.
  explicit FakeReservationTable(kv::KvBlockPool& pool, std::string fingerprint = "")
      : pool_(pool), fingerprint_(std::move(fingerprint)) {}

  // Reserves ceil(n_prompt_tokens / block_size) blocks, fragmented and shuffled when `shuffle`
  // (taken from the pool in a scrambled order); returns the new reservation's token.
  std::string Reserve(const std::string& request_id, int64_t n_prompt_tokens,
                      bool shuffle = false);
  ReservationView ViewOf(const std::string& token) const;
  State StateOf(const std::string& token) const;
  absl::Status ErrorOf(const std::string& token) const;  // why it failed
  int32_t FirstTokenOf(const std::string& token) const;
  // Returns the blocks of ended (completed or failed) reservations to the pool.
  void ReleaseEnded();

  const kv::KvLayout& layout() const override { return pool_.layout(); }
  const std::string& model_fingerprint() const override { return fingerprint_; }
  absl::StatusOr<ReservationView> Lookup(absl::string_view token) override;
  absl::Status Pin(absl::string_view token, absl::Span<const int64_t> indices) override;
  absl::Status Unpin(absl::string_view token, absl::Span<const int64_t> indices,
                     absl::Status verdict) override;
  absl::Status Complete(absl::string_view token, int32_t first_token) override;
  void Fail(absl::string_view token, const absl::Status& error) override;

 private:
  struct Reservation {
    ReservationView view;
    State state = State::kAwaiting;
    absl::Status error;
    int32_t first_token = -1;
    std::vector<int> block_state;  // 0 absent, 1 in flight, 2 received
    int pins = 0;
  };
  Reservation* Find(absl::string_view token) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailLocked(Reservation& r, const absl::Status& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  kv::KvBlockPool& pool_;
  const std::string fingerprint_;
  mutable absl::Mutex mu_;
  std::map<std::string, Reservation> reservations_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pdserve::kv_transfer::testing
