// ServeWorkerUntilSignal's drain on SIGTERM (cli/worker_flags.h), in-process: a fake router
// registry, and a fake prefill service whose calls stay in flight until the test finishes them.
// The serving thread alone takes the signals (ShutdownSignals in that thread, pthread_kill to
// it), so the test's other threads are untouched.

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cli/worker_flags.h"
#include "common/rpc/drain_gate.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/cli/parse_args.h"
#include "tests/support/health_check.h"
#include "tests/support/wait_for.h"
#include "worker.grpc.pb.h"

namespace pdserve::cli {
namespace {

using test_support::CheckHealth;
using test_support::WaitFor;

// The router's WorkerRegistry as far as a draining worker sees it: where the worker registered,
// and when and how it deregistered. Heartbeats are always welcome.
class RecordingRegistry final : public v1::WorkerRegistry::Service {
 public:
  grpc::Status RegisterWorker(grpc::ServerContext*, const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override {
    absl::MutexLock lock(&mu_);
    registered_address_ = request->address();
    response->set_heartbeat_interval_ms(50);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*,
                         v1::HeartbeatResponse* response) override {
    response->set_registered(true);
    return grpc::Status::OK;
  }
  grpc::Status Deregister(grpc::ServerContext*, const v1::DeregisterWorkerRequest* request,
                          v1::DeregisterWorkerResponse* response) override {
    absl::MutexLock lock(&mu_);
    deregistrations_.push_back(*request);
    response->set_was_registered(true);
    return grpc::Status::OK;
  }

  std::string registered_address() {
    absl::MutexLock lock(&mu_);
    return registered_address_;
  }
  std::vector<v1::DeregisterWorkerRequest> deregistrations() {
    absl::MutexLock lock(&mu_);
    return deregistrations_;
  }

 private:
  absl::Mutex mu_;
  std::string registered_address_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::DeregisterWorkerRequest> deregistrations_ ABSL_GUARDED_BY(mu_);
};

// Prefill calls that stay in flight until FinishAll: the work a drain waits for. New calls are
// refused through the drain gate, as the real services do; a call cancelled by the server's
// shutdown ends CANCELLED, as a real reactor's does (gRPC's Shutdown waits for every reactor).
class HeldPrefills final : public v1::PrefillWorker::CallbackService {
 public:
  explicit HeldPrefills(const rpc::DrainGate* gate) : gate_(gate) {}

  grpc::ServerUnaryReactor* Prefill(grpc::CallbackServerContext* context,
                                    const v1::PrefillRequest*, v1::PrefillResponse*) override {
    if (absl::Status s = rpc::AdmitNewWork(gate_); !s.ok()) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(rpc::ToGrpcStatus(s));
      return reactor;
    }
    auto* held = new HeldCall(*this);
    absl::MutexLock lock(&mu_);
    held_.push_back(held);
    return held;
  }

  void FinishAll(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    for (HeldCall* call : held_) call->Finish(status);
    held_.clear();
  }
  int64_t n_held() {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(held_.size());
  }

 private:
  class HeldCall final : public grpc::ServerUnaryReactor {
   public:
    explicit HeldCall(HeldPrefills& owner) : owner_(owner) {}
    void OnCancel() override { owner_.Forget(this, grpc::Status::CANCELLED); }
    void OnDone() override { delete this; }

   private:
    HeldPrefills& owner_;
  };

  // Finishes `call` unless FinishAll already did.
  void Forget(HeldCall* call, const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    auto it = std::find(held_.begin(), held_.end(), call);
    if (it == held_.end()) return;
    held_.erase(it);
    call->Finish(status);
  }

  const rpc::DrainGate* const gate_;
  absl::Mutex mu_;
  std::vector<HeldCall*> held_ ABSL_GUARDED_BY(mu_);  // in flight, not finished
};

// One Prefill call on a thread of its own.
std::future<grpc::Status> CallPrefill(const std::string& address) {
  return std::async(std::launch::async, [address] {
    auto stub = v1::PrefillWorker::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::PrefillRequest request;
    request.set_request_id("r");
    v1::PrefillResponse response;
    return stub->Prefill(&context, request, &response);
  });
}

absl::StatusOr<WorkerServingFlags> FlagsFrom(std::vector<std::string> args) {
  ArgParser parser;
  AddWorkerServingFlags(parser);
  if (absl::Status s = ParseArgs(parser, std::move(args)); !s.ok()) return s;
  return WorkerServingFlagsFrom(parser);
}

class WorkerDrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&registry_);
    registry_server_ = builder.BuildAndStart();
    ASSERT_NE(registry_server_, nullptr);
    router_ = absl::StrCat("127.0.0.1:", port);

    server_.role = v1::WORKER_ROLE_PREFILL;
    server_.services = {&prefills_};
    server_.load = [this] {
      v1::WorkerLoad load;
      load.set_active_sequences(prefills_.n_held());
      return load;
    };
    server_.drain_gate = &gate_;
  }

  void TearDown() override {
    if (serving_.valid() && serving_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      pthread_kill(serving_thread_, SIGTERM);
      pthread_kill(serving_thread_, SIGTERM);  // a second signal: no drain
    }
    if (serving_.valid()) serving_.wait();
    registry_server_->Shutdown();
  }

  // Starts ServeWorkerUntilSignal on its own thread and waits until it registered (with the
  // registry) or listens; returns the worker's address.
  std::string Serve(std::vector<std::string> args) {
    absl::StatusOr<WorkerServingFlags> flags = FlagsFrom(std::move(args));
    EXPECT_TRUE(flags.ok()) << flags.status();
    flags_ = *flags;
    serving_ = std::async(std::launch::async, [this] {
      const rpc::ShutdownSignals signals;  // before this thread starts any other
      serving_thread_started_.set_value(pthread_self());
      return ServeWorkerUntilSignal("drain-test-worker", signals, flags_, server_);
    });
    serving_thread_ = serving_thread_started_.get_future().get();
    EXPECT_TRUE(WaitFor([&] { return !registry_.registered_address().empty(); }));
    return registry_.registered_address();
  }

  void Signal() { ASSERT_EQ(pthread_kill(serving_thread_, SIGTERM), 0); }
  bool Exited(std::chrono::milliseconds within) {
    return serving_.wait_for(within) == std::future_status::ready;
  }

  RecordingRegistry registry_;
  std::unique_ptr<grpc::Server> registry_server_;
  std::string router_;
  rpc::DrainGate gate_;
  HeldPrefills prefills_{&gate_};
  WorkerServer server_;
  WorkerServingFlags flags_;
  std::future<int> serving_;
  std::promise<pthread_t> serving_thread_started_;
  pthread_t serving_thread_{};
};

TEST(DrainTimeoutFlagTest, DefaultsTo30SecondsAndMustBeInRange) {
  absl::StatusOr<WorkerServingFlags> defaults = FlagsFrom({});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->drain_timeout, absl::Seconds(30));
  absl::StatusOr<WorkerServingFlags> given = FlagsFrom({"--drain-timeout-s", "0"});
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->drain_timeout, absl::ZeroDuration());
  for (const char* bad : {"-1", "3601", "soon", "1.5"}) {
    absl::StatusOr<WorkerServingFlags> flags = FlagsFrom({"--drain-timeout-s", bad});
    EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(flags.status().message().find("--drain-timeout-s"), std::string::npos)
        << flags.status();
  }
}

TEST_F(WorkerDrainTest, SigtermRefusesNewWorkDeregistersAndExits0OnceWorkInFlightFinished) {
  const std::string worker = Serve({"--router", router_, "--worker-id", "prefill-drain",
                                    "--drain-timeout-s", "20"});
  std::future<grpc::Status> in_flight = CallPrefill(worker);
  ASSERT_TRUE(WaitFor([&] { return prefills_.n_held() == 1; }));

  const absl::Time signalled = absl::Now();
  Signal();
  ASSERT_TRUE(WaitFor([&] { return !registry_.deregistrations().empty(); },
                      std::chrono::milliseconds(2000)));
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(2));
  const v1::DeregisterWorkerRequest deregistration = registry_.deregistrations()[0];
  EXPECT_EQ(deregistration.worker_id(), "prefill-drain");
  EXPECT_EQ(deregistration.address(), worker);

  std::string health;
  ASSERT_TRUE(CheckHealth(worker, &health).ok());  // calls are still taken ...
  EXPECT_EQ(health, std::string("\x08\x02", 2));   // ... health says NOT_SERVING
  const grpc::Status refused = CallPrefill(worker).get();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(refused.error_message().find("draining"), std::string::npos)
      << refused.error_message();

  // Still draining: the call in flight holds it.
  EXPECT_FALSE(Exited(std::chrono::milliseconds(300)));
  prefills_.FinishAll(grpc::Status::OK);
  EXPECT_TRUE(in_flight.get().ok());
  ASSERT_TRUE(Exited(std::chrono::milliseconds(5000)));
  EXPECT_EQ(serving_.get(), 0);
  EXPECT_EQ(registry_.deregistrations().size(), 1u);
}

TEST_F(WorkerDrainTest, ASecondSignalStopsTheDrainAtOnce) {
  const std::string worker = Serve({"--router", router_, "--drain-timeout-s", "60"});
  std::future<grpc::Status> in_flight = CallPrefill(worker);
  ASSERT_TRUE(WaitFor([&] { return prefills_.n_held() == 1; }));
  Signal();
  ASSERT_TRUE(WaitFor([&] { return !registry_.deregistrations().empty(); }));
  EXPECT_FALSE(Exited(std::chrono::milliseconds(300)));
  const absl::Time second = absl::Now();
  Signal();
  ASSERT_TRUE(Exited(std::chrono::milliseconds(5000)));
  EXPECT_LT(absl::Now() - second, absl::Seconds(3));
  EXPECT_EQ(serving_.get(), 0);
  EXPECT_FALSE(in_flight.get().ok());  // cancelled, not finished
}

TEST_F(WorkerDrainTest, WorkStillInFlightAtTheDrainTimeoutIsCancelled) {
  const std::string worker = Serve({"--router", router_, "--drain-timeout-s", "1"});
  std::future<grpc::Status> in_flight = CallPrefill(worker);
  ASSERT_TRUE(WaitFor([&] { return prefills_.n_held() == 1; }));
  const absl::Time signalled = absl::Now();
  Signal();
  ASSERT_TRUE(Exited(std::chrono::milliseconds(6000)));
  const absl::Duration took = absl::Now() - signalled;
  EXPECT_GE(took, absl::Seconds(1));
  EXPECT_LT(took, absl::Seconds(4));
  EXPECT_EQ(serving_.get(), 0);
  EXPECT_FALSE(in_flight.get().ok());
}

TEST_F(WorkerDrainTest, AnIdleWorkerExitsAtOnce) {
  Serve({"--router", router_, "--drain-timeout-s", "60"});
  const absl::Time signalled = absl::Now();
  Signal();
  ASSERT_TRUE(Exited(std::chrono::milliseconds(5000)));
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(3));
  EXPECT_EQ(serving_.get(), 0);
  EXPECT_EQ(registry_.deregistrations().size(), 1u);
}

}  // namespace
}  // namespace pdserve::cli
