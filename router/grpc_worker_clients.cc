#include "router/grpc_worker_clients.h"

#include <atomic>
#include <utility>

#include "common/rpc/grpc_status.h"
#include "grpcpp/client_context.h"
#include "worker.grpc.pb.h"

namespace pdserve::router {
namespace {

void SetDeadline(grpc::ClientContext& context, absl::Time deadline) {
  if (deadline != absl::InfiniteFuture()) context.set_deadline(absl::ToChronoTime(deadline));
}

// One unary Prefill call. Shared by the gRPC callback (until it has run) and the caller's
// handle, so that Cancel is safe at any time.
struct PrefillCallState {
  std::unique_ptr<v1::PrefillWorker::Stub> stub;
  grpc::ClientContext context;
  v1::PrefillRequest request;
  v1::PrefillResponse response;
};

class PrefillHandle final : public CancellableCall {
 public:
  explicit PrefillHandle(std::shared_ptr<PrefillCallState> state) : state_(std::move(state)) {}
  void Cancel() override { state_->context.TryCancel(); }

 private:
  std::shared_ptr<PrefillCallState> state_;
};

// One Decode stream. Owned jointly by gRPC (until OnDone) and the relay's handle (until it is
// dropped): deleted when both are done, so that the handle's Read, Cancel and drop never touch
// a deleted reactor, whatever gRPC did meanwhile. While the handle holds it, a hold keeps the
// call from completing (Read never starts on a finished call); dropping the handle cancels the
// call and removes the hold. A read that fails also removes the hold, so that OnDone can bring
// the call's status, which is then delivered as the stream's end.
class DecodeReactor final : public grpc::ClientReadReactor<v1::DecodeEvent> {
 public:
  DecodeReactor(std::shared_ptr<grpc::Channel> channel, const v1::DecodeRequest& request,
                absl::Time deadline, DecodeClient::OnResult on_result)
      : stub_(v1::DecodeWorker::NewStub(std::move(channel))), on_result_(std::move(on_result)) {
    SetDeadline(context_, deadline);
    stub_->async()->Decode(&context_, &request, this);
    AddHold();  // the handle's
    StartRead(&event_);
    StartCall();
  }

  void Read() { StartRead(&event_); }
  void Cancel() { context_.TryCancel(); }
  // The handle is gone: no more Read or Cancel from it.
  void Detach() {
    detached_ = true;
    context_.TryCancel();
    ReleaseHandleHold();
    Unref();
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      // event_ is free again before the relay sees the event: its next Read may come at once.
      DecodeStreamResult result{std::move(event_), absl::OkStatus()};
      event_.Clear();
      on_result_(std::move(result));
      return;
    }
    read_failed_ = true;
    ReleaseHandleHold();
  }

  void OnDone(const grpc::Status& status) override {
    // Delivered only when a read is waiting for it; a detached stream's end goes unreported.
    if (read_failed_ && !detached_) {
      absl::Status end = rpc::FromGrpcStatus(status);
      if (end.ok()) end = absl::InternalError("the decode stream ended without `finished`");
      on_result_(DecodeStreamResult{std::nullopt, std::move(end)});
    }
    Unref();
  }

 private:
  // Both the handle's drop and a failed read remove the one hold: whichever comes first.
  void ReleaseHandleHold() {
    if (!hold_released_.exchange(true)) RemoveHold();
  }
  // gRPC's reference (OnDone) and the handle's (Detach).
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::unique_ptr<v1::DecodeWorker::Stub> stub_;
  grpc::ClientContext context_;
  v1::DecodeEvent event_;
  const DecodeClient::OnResult on_result_;
  std::atomic<bool> detached_{false};
  bool read_failed_ = false;  // set by the last OnReadDone, read by OnDone (ordered by gRPC)
  std::atomic<bool> hold_released_{false};
  std::atomic<int> refs_{2};
};

class DecodeHandle final : public DecodeStream {
 public:
  explicit DecodeHandle(DecodeReactor* reactor) : reactor_(reactor) {}
  ~DecodeHandle() override { reactor_->Detach(); }
  void Read() override { reactor_->Read(); }
  void Cancel() override { reactor_->Cancel(); }

 private:
  DecodeReactor* const reactor_;  // alive until Detach: the handle holds a reference
};

}  // namespace

std::unique_ptr<CancellableCall> GrpcPrefillClient::Prefill(const WorkerSnapshot& worker,
                                                            const v1::PrefillRequest& request,
                                                            absl::Time deadline, Done done) {
  auto state = std::make_shared<PrefillCallState>();
  state->request = request;
  SetDeadline(state->context, deadline);
  state->stub = v1::PrefillWorker::NewStub(channels_.Get(worker.address));
  state->stub->async()->Prefill(&state->context, &state->request, &state->response,
                        [state, done = std::move(done)](grpc::Status status) {
                          if (status.ok()) {
                            done(std::move(state->response));
                          } else {
                            done(rpc::FromGrpcStatus(status));
                          }
                        });
  return std::make_unique<PrefillHandle>(std::move(state));
}

std::unique_ptr<DecodeStream> GrpcDecodeClient::Decode(const WorkerSnapshot& worker,
                                                       const v1::DecodeRequest& request,
                                                       absl::Time deadline, OnResult on_result) {
  return std::make_unique<DecodeHandle>(
      new DecodeReactor(channels_.Get(worker.address), request, deadline, std::move(on_result)));
}

}  // namespace pdserve::router
