#include "tests/router/fake_workers.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace pdserve::router::testing {

int32_t ToyNextToken(const std::vector<int32_t>& prefix) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t t : prefix) h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ull;
  return ByteToken(static_cast<unsigned char>('a' + h % 26));
}

Executor::Executor() {
  thread_ = std::thread([this] {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](Executor* e) ABSL_NO_THREAD_SAFETY_ANALYSIS { return e->stop_ || !e->tasks_.empty(); },
            this));
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  });
}

Executor::~Executor() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void Executor::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

// A decode stream's state; guarded by the cluster's mu_.
class FakeCluster::Stream : public std::enable_shared_from_this<Stream> {
 public:
  FakeCluster* cluster = nullptr;
  std::string worker_id;
  std::vector<int32_t> sequence;  // prompt, then every token made so far
  int32_t max_tokens = 0;
  int fail_after_tokens = -1;
  absl::Status fail_status;
  DecodeClient::OnResult on_result;
  bool kv_ready = false;
  int n_decoded = 0;  // tokens with index >= 1 sent
  bool read_pending = false;
  bool cancelled = false;
  bool ended = false;

  // Delivers what a pending read can get now, if anything. Requires cluster->mu_.
  void TryDeliverLocked() {
    if (!read_pending || ended) return;
    DecodeStreamResult result;
    if (cancelled) {
      result.end_status = absl::CancelledError("cancelled");
    } else if (!kv_ready) {
      return;
    } else if (fail_after_tokens >= 0 && n_decoded >= fail_after_tokens) {
      result.end_status = fail_status;
    } else if (n_decoded + 1 >= max_tokens) {
      result.event.emplace().mutable_finished()->set_finish_reason("length");
      result.event->mutable_finished()->set_completion_tokens(max_tokens);
    } else {
      const int32_t token = ToyNextToken(sequence);
      sequence.push_back(token);
      ++n_decoded;
      v1::DecodeToken* out = result.event.emplace().mutable_token();
      out->set_token_id(token);
      out->set_index(n_decoded);
    }
    read_pending = false;
    if (!result.event.has_value() || result.event->has_finished()) {
      ended = true;
      --cluster->open_streams_;
    }
    cluster->executor_.Post(
        [on_result = on_result, result = std::move(result)]() mutable { on_result(std::move(result)); });
  }
};

namespace {

class StreamHandle final : public DecodeStream {
 public:
  StreamHandle(std::shared_ptr<void> keep, std::function<void()> read,
               std::function<void()> cancel)
      : keep_(std::move(keep)), read_(std::move(read)), cancel_(std::move(cancel)) {}
  ~StreamHandle() override { cancel_(); }
  void Read() override { read_(); }
  void Cancel() override { cancel_(); }

 private:
  std::shared_ptr<void> keep_;
  std::function<void()> read_;
  std::function<void()> cancel_;
};

class NothingToCancel final : public CancellableCall {
 public:
  void Cancel() override {}
};

}  // namespace

FakeCluster::~FakeCluster() = default;

void FakeCluster::Script(const std::string& worker_id, FakeWorkerScript script) {
  absl::MutexLock lock(&mu_);
  scripts_[worker_id] = std::move(script);
}

std::unique_ptr<DecodeStream> FakeCluster::Decode(const WorkerSnapshot& worker,
                                                  const v1::DecodeRequest& request,
                                                  absl::Time deadline, OnResult on_result) {
  absl::MutexLock lock(&mu_);
  decode_calls_.push_back(Call{worker.worker_id, request.request_id(),
                               {request.prompt_ids().begin(), request.prompt_ids().end()},
                               request.max_tokens(), ""});
  FakeWorkerScript& script = scripts_[worker.worker_id];
  if (!script.reserve_errors.empty()) {
    absl::Status error = script.reserve_errors.front();
    script.reserve_errors.pop_front();
    executor_.Post([on_result, error] { on_result(DecodeStreamResult{std::nullopt, error}); });
    return std::make_unique<StreamHandle>(nullptr, [] {}, [] {});
  }
  auto stream = std::make_shared<Stream>();
  stream->cluster = this;
  stream->worker_id = worker.worker_id;
  stream->sequence.assign(request.prompt_ids().begin(), request.prompt_ids().end());
  stream->max_tokens = request.max_tokens();
  stream->fail_after_tokens = script.fail_after_tokens;
  stream->fail_status = script.fail_status;
  stream->on_result = on_result;
  ++open_streams_;
  const std::string token = absl::StrCat("token-", next_token_number_++);
  by_token_[token] = stream;
  DecodeStreamResult reserved;
  v1::DecodeReserved* r = reserved.event.emplace().mutable_reserved();
  r->set_kv_blocks(4);
  r->mutable_handoff()->set_transfer_token(token);
  executor_.Post([on_result, reserved]() mutable { on_result(std::move(reserved)); });
  return std::make_unique<StreamHandle>(
      stream,
      [this, stream] {
        absl::MutexLock lock(&mu_);
        ++reads_;
        stream->read_pending = true;
        stream->TryDeliverLocked();
      },
      [this, stream] {
        absl::MutexLock lock(&mu_);
        if (stream->ended || stream->cancelled) return;
        stream->cancelled = true;
        if (stream->read_pending) {
          stream->TryDeliverLocked();
        } else {
          stream->ended = true;
          --open_streams_;
        }
      });
}

std::unique_ptr<CancellableCall> FakeCluster::Prefill(const WorkerSnapshot& worker,
                                                      const v1::PrefillRequest& request,
                                                      absl::Time deadline,
                                                      PrefillClient::Done done) {
  absl::MutexLock lock(&mu_);
  const std::string& token = request.handoff().transfer_token();
  prefill_calls_.push_back(Call{worker.worker_id, request.request_id(),
                                {request.prompt_ids().begin(), request.prompt_ids().end()},
                                0, token});
  FakeWorkerScript& script = scripts_[worker.worker_id];
  absl::StatusOr<v1::PrefillResponse> answer;
  if (!script.prefill_errors.empty()) {
    answer = script.prefill_errors.front();
    script.prefill_errors.pop_front();
  } else if (auto it = by_token_.find(token); it == by_token_.end() || it->second->ended) {
    answer = absl::PermissionDeniedError("no reservation has this transfer token");
  } else {
    Stream& stream = *it->second;
    std::vector<int32_t> prompt(request.prompt_ids().begin(), request.prompt_ids().end());
    const int32_t first = ToyNextToken(prompt);
    stream.sequence = std::move(prompt);
    stream.sequence.push_back(first);
    stream.kv_ready = true;
    stream.TryDeliverLocked();
    v1::PrefillResponse response;
    response.set_first_token(first);
    answer = std::move(response);
  }
  executor_.Post([done, answer]() mutable { done(std::move(answer)); });
  return std::make_unique<NothingToCancel>();
}

std::vector<FakeCluster::Call> FakeCluster::prefill_calls() {
  absl::MutexLock lock(&mu_);
  return prefill_calls_;
}

std::vector<FakeCluster::Call> FakeCluster::decode_calls() {
  absl::MutexLock lock(&mu_);
  return decode_calls_;
}

int FakeCluster::open_decode_streams() {
  absl::MutexLock lock(&mu_);
  return open_streams_;
}

int64_t FakeCluster::decode_reads() {
  absl::MutexLock lock(&mu_);
  return reads_;
}

}  // namespace pdserve::router::testing
