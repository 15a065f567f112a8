#include "tests/common/kv_transfer/fake_reservation_table.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/kv_transfer/transfer_token.h"

namespace pdserve::kv_transfer::testing {

std::string FakeReservationTable::Reserve(const std::string& request_id,
                                          int64_t n_prompt_tokens, bool shuffle) {
  const int64_t block_size = pool_.layout().block_size;
  const int64_t n_blocks = (n_prompt_tokens + block_size - 1) / block_size;
  std::vector<kv::BlockId> blocks;
  if (shuffle) {
    // Take twice as many, give back every other one, and scramble the rest: fragmented and out
    // of order.
    absl::StatusOr<std::vector<kv::BlockId>> all = pool_.Allocate(2 * n_blocks);
    if (!all.ok()) return "";
    std::vector<kv::BlockId> spare;
    for (size_t i = 0; i < all->size(); ++i) (i % 2 == 0 ? blocks : spare).push_back((*all)[i]);
    (void)pool_.Free(spare);
    std::mt19937 rng(static_cast<uint32_t>(n_prompt_tokens));
    std::shuffle(blocks.begin(), blocks.end(), rng);
  } else {
    absl::StatusOr<std::vector<kv::BlockId>> all = pool_.Allocate(n_blocks);
    if (!all.ok()) return "";
    blocks = *std::move(all);
  }
  std::string token = NewTransferToken();
  absl::MutexLock lock(&mu_);
  Reservation& r = reservations_[token];
  r.view.request_id = request_id;
  r.view.n_prompt_tokens = n_prompt_tokens;
  r.view.target_blocks = std::move(blocks);
  r.block_state.assign(r.view.target_blocks.size(), 0);
  return token;
}

FakeReservationTable::Reservation* FakeReservationTable::Find(absl::string_view token) {
  auto it = reservations_.find(std::string(token));
  return it == reservations_.end() ? nullptr : &it->second;
}

ReservationView FakeReservationTable::ViewOf(const std::string& token) const {
  absl::MutexLock lock(&mu_);
  return reservations_.at(token).view;
}

FakeReservationTable::State FakeReservationTable::StateOf(const std::string& token) const {
  absl::MutexLock lock(&mu_);
  return reservations_.at(token).state;
}

absl::Status FakeReservationTable::ErrorOf(const std::string& token) const {
  absl::MutexLock lock(&mu_);
  return reservations_.at(token).error;
}

int32_t FakeReservationTable::FirstTokenOf(const std::string& token) const {
  absl::MutexLock lock(&mu_);
  return reservations_.at(token).first_token;
}

void FakeReservationTable::ReleaseEnded() {
  absl::MutexLock lock(&mu_);
  for (auto it = reservations_.begin(); it != reservations_.end();) {
    if (it->second.state != State::kAwaiting && it->second.pins == 0) {
      (void)pool_.Free(it->second.view.target_blocks);
      it = reservations_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::StatusOr<ReservationView> FakeReservationTable::Lookup(absl::string_view token) {
  absl::MutexLock lock(&mu_);
  Reservation* r = Find(token);
  if (r == nullptr || r->state != State::kAwaiting) {
    return absl::PermissionDeniedError("no reservation awaiting KV holds this transfer token");
  }
  return r->view;
}

void FakeReservationTable::FailLocked(Reservation& r, const absl::Status& error) {
  if (r.state != State::kAwaiting) return;
  r.state = State::kFailed;
  r.error = error;
}

absl::Status FakeReservationTable::Pin(absl::string_view token,
                                       absl::Span<const int64_t> indices) {
  absl::MutexLock lock(&mu_);
  Reservation* r = Find(token);
  if (r == nullptr) return absl::PermissionDeniedError("unknown transfer token");
  if (r->state != State::kAwaiting) {
    return absl::FailedPreconditionError("the reservation no longer awaits KV");
  }
  for (int64_t i : indices) {
    if (i < 0 || i >= static_cast<int64_t>(r->block_state.size()) || r->block_state[i] != 0) {
      absl::Status error =
          absl::InvalidArgumentError(absl::StrCat("KV block ", i, " out of range or repeated"));
      FailLocked(*r, error);
      return error;
    }
  }
  for (int64_t i : indices) r->block_state[i] = 1;
  ++r->pins;
  return absl::OkStatus();
}

absl::Status FakeReservationTable::Unpin(absl::string_view token,
                                         absl::Span<const int64_t> indices,
                                         absl::Status verdict) {
  absl::MutexLock lock(&mu_);
  Reservation* r = Find(token);
  if (r == nullptr) return absl::PermissionDeniedError("unknown transfer token");
  --r->pins;
  for (int64_t i : indices) r->block_state[i] = verdict.ok() ? 2 : 0;
  if (!verdict.ok()) {
    FailLocked(*r, verdict);
    return verdict;
  }
  if (r->state == State::kFailed) return r->error;
  return absl::OkStatus();
}

absl::Status FakeReservationTable::Complete(absl::string_view token, int32_t first_token) {
  absl::MutexLock lock(&mu_);
  Reservation* r = Find(token);
  if (r == nullptr || r->state != State::kAwaiting) {
    return absl::PermissionDeniedError("no reservation awaiting KV holds this transfer token");
  }
  for (int s : r->block_state) {
    if (s != 2) {
      absl::Status error = absl::InvalidArgumentError("the last KV chunk came before every block");
      FailLocked(*r, error);
      return error;
    }
  }
  r->state = State::kComplete;
  r->first_token = first_token;
  return absl::OkStatus();
}

void FakeReservationTable::Fail(absl::string_view token, const absl::Status& error) {
  absl::MutexLock lock(&mu_);
  if (Reservation* r = Find(token); r != nullptr) FailLocked(*r, error);
}

}  // namespace pdserve::kv_transfer::testing
