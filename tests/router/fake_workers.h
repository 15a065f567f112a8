#pragma once
// In-memory prefill and decode workers for relay tests: the PrefillClient / DecodeClient
// interfaces (router/worker_clients.h) over a toy model whose next token is a function of the
// whole prefix (so a request re-run elsewhere after a failover must produce the same text), with
// scripted faults per worker. Every callback runs on the fakes' one executor thread, never
// inline, as gRPC's may.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "router/worker_clients.h"

namespace pdserve::router::testing {

// Byte tokens of the stories260K tokenizer: id = byte + 3; 2 is its end-of-sequence token.
inline int32_t ByteToken(unsigned char b) { return static_cast<int32_t>(b) + 3; }

// The toy model: a lowercase letter chosen by a hash of every token before it.
int32_t ToyNextToken(const std::vector<int32_t>& prefix);

// Runs tasks one at a time on a thread of its own.
class Executor {
 public:
  Executor();
  ~Executor();  // runs what is queued, then stops
  void Post(std::function<void()> task);

 private:
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// What one fake worker does; set before the calls it should affect.
struct FakeWorkerScript {
  // Prefill workers: statuses the next calls answer, in order, before any succeeds.
  std::deque<absl::Status> prefill_errors;
  // Decode workers: statuses the next Decode calls end with before `reserved`.
  std::deque<absl::Status> reserve_errors;
  // Decode workers: after this many tokens (index >= 1) on a stream, the stream ends with
  // `fail_status` (the worker died). -1: never.
  int fail_after_tokens = -1;
  absl::Status fail_status = absl::UnavailableError("connection reset by peer");
};

// One toy cluster: both clients share its workers' state, as real workers share KV.
class FakeCluster final : public PrefillClient, public DecodeClient {
 public:
  FakeCluster() = default;
  ~FakeCluster() override;

  void Script(const std::string& worker_id, FakeWorkerScript script);

  std::unique_ptr<CancellableCall> Prefill(const WorkerSnapshot& worker,
                                           const v1::PrefillRequest& request, absl::Time deadline,
                                           PrefillClient::Done done) override;
  std::unique_ptr<DecodeStream> Decode(const WorkerSnapshot& worker,
                                       const v1::DecodeRequest& request, absl::Time deadline,
                                       OnResult on_result) override;

  // What the workers were asked, in order.
  struct Call {
    std::string worker_id;
    std::string request_id;
    std::vector<int32_t> prompt_ids;
    int32_t max_tokens = 0;    // decode calls
    std::string handoff_token;  // prefill calls: the reservation they filled
  };
  std::vector<Call> prefill_calls();
  std::vector<Call> decode_calls();
  // Decode streams whose call has not ended (not finished, failed or cancelled).
  int open_decode_streams();
  // Reads the relay asked for on all streams so far.
  int64_t decode_reads();

 private:
  class Stream;
  friend class Stream;

  absl::Mutex mu_;
  std::map<std::string, FakeWorkerScript> scripts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Stream>> by_token_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> prefill_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> decode_calls_ ABSL_GUARDED_BY(mu_);
  int open_streams_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reads_ ABSL_GUARDED_BY(mu_) = 0;
  int next_token_number_ ABSL_GUARDED_BY(mu_) = 0;
  Executor executor_;  // last: joined first, while the state its tasks touch is alive
};

}  // namespace pdserve::router::testing
