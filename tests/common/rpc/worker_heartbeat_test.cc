#include "common/rpc/worker_heartbeat.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/support/wait_for.h"

namespace pdserve::rpc {
namespace {

using test_support::WaitFor;

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A router's WorkerRegistry reduced to counters: what the client sent, one registered=false
// answer on request, and registrations answered with an error on request.
class FakeRegistry final : public v1::WorkerRegistry::Service {
 public:
  explicit FakeRegistry(int interval_ms) : interval_ms_(interval_ms) {}

  grpc::Status RegisterWorker(grpc::ServerContext*, const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    last_register_ = *request;
    ++n_registers_;
    if (n_errors_ > 0) {
      --n_errors_;
      return error_;
    }
    response->set_heartbeat_interval_ms(interval_ms_);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++n_heartbeats_;
    last_heartbeat_ = *request;
    response->set_registered(!forget_once_);
    if (forget_once_) {
      forget_once_ = false;
      n_registers_at_forget_ = n_registers_;
    }
    return grpc::Status::OK;
  }
  grpc::Status Deregister(grpc::ServerContext*, const v1::DeregisterWorkerRequest* request,
                          v1::DeregisterWorkerResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++n_deregisters_;
    last_deregister_ = *request;
    response->set_was_registered(true);
    return grpc::Status::OK;
  }

  void ForgetOnce() {
    std::lock_guard<std::mutex> lock(mutex_);
    forget_once_ = true;
  }
  // The next `n` registrations are answered with `error`.
  void FailRegistrations(int n, grpc::Status error) {
    std::lock_guard<std::mutex> lock(mutex_);
    n_errors_ = n;
    error_ = std::move(error);
  }
  int n_registers() {
    std::lock_guard<std::mutex> lock(mutex_);
    return n_registers_;
  }
  int n_heartbeats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return n_heartbeats_;
  }
  int n_registers_at_forget() {
    std::lock_guard<std::mutex> lock(mutex_);
    return n_registers_at_forget_;
  }
  v1::RegisterWorkerRequest last_register() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_register_;
  }
  v1::HeartbeatRequest last_heartbeat() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_heartbeat_;
  }
  int n_deregisters() {
    std::lock_guard<std::mutex> lock(mutex_);
    return n_deregisters_;
  }
  v1::DeregisterWorkerRequest last_deregister() {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_deregister_;
  }

 private:
  const int interval_ms_;
  std::mutex mutex_;
  int n_registers_ = 0;
  int n_heartbeats_ = 0;
  int n_deregisters_ = 0;
  int n_registers_at_forget_ = -1;
  bool forget_once_ = false;
  int n_errors_ = 0;
  grpc::Status error_;
  v1::RegisterWorkerRequest last_register_;
  v1::HeartbeatRequest last_heartbeat_;
  v1::DeregisterWorkerRequest last_deregister_;
};

// Starts a server for `service` on 127.0.0.1:`port` (0 = pick one); sets *bound_port.
std::unique_ptr<grpc::Server> StartServer(grpc::Service* service, int port, int* bound_port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                           bound_port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

WorkerHeartbeatOptions OptionsFor(int port) {
  WorkerHeartbeatOptions options;
  options.router_address = "127.0.0.1:" + std::to_string(port);
  options.worker_id = "prefill-test";
  options.role = v1::WORKER_ROLE_PREFILL;
  options.advertised_address = "127.0.0.1:4242";
  options.kv_layout.set_block_size(16);
  options.kv_layout.set_dtype("f32");
  options.model_name = "stories260K";
  options.register_timeout = milliseconds(5000);
  return options;
}

v1::WorkerLoad LoadWithQueue(int n) {
  v1::WorkerLoad load;
  load.set_queue_length(n);
  load.set_free_kv_blocks(7);
  load.set_total_kv_blocks(32);
  return load;
}

TEST(WorkerHeartbeatTest, RegistersThenHeartbeatsWithTheLoad) {
  FakeRegistry registry(/*interval_ms=*/20);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  ASSERT_NE(port, 0);
  std::atomic<int> queue{3};
  WorkerHeartbeat heartbeat(OptionsFor(port), [&] { return LoadWithQueue(queue.load()); });
  ASSERT_TRUE(heartbeat.Start().ok());
  EXPECT_TRUE(heartbeat.registered());
  EXPECT_EQ(heartbeat.heartbeat_interval(), milliseconds(20));

  const v1::RegisterWorkerRequest reg = registry.last_register();
  EXPECT_EQ(reg.worker_id(), "prefill-test");
  EXPECT_EQ(reg.role(), v1::WORKER_ROLE_PREFILL);
  EXPECT_EQ(reg.address(), "127.0.0.1:4242");
  EXPECT_EQ(reg.model_name(), "stories260K");
  EXPECT_EQ(reg.kv_layout().block_size(), 16);
  EXPECT_EQ(reg.load().queue_length(), 3);

  queue = 9;
  ASSERT_TRUE(WaitFor([&] { return registry.last_heartbeat().load().queue_length() == 9; }));
  EXPECT_EQ(registry.last_heartbeat().worker_id(), "prefill-test");
  EXPECT_EQ(registry.last_heartbeat().load().total_kv_blocks(), 32);
  ASSERT_TRUE(WaitFor([&] { return registry.n_heartbeats() >= 5; }));
  EXPECT_EQ(registry.n_registers(), 1);  // heartbeats alone while the router knows the worker
  heartbeat.Stop();
  server->Shutdown();
}

TEST(WorkerHeartbeatTest, RegistersAgainWhenTheRouterForgetsTheWorker) {
  FakeRegistry registry(/*interval_ms=*/20);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(0); });
  ASSERT_TRUE(heartbeat.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return registry.n_heartbeats() >= 2; }));
  EXPECT_EQ(registry.n_registers(), 1);
  registry.ForgetOnce();
  ASSERT_TRUE(WaitFor([&] { return registry.n_registers() >= 2; }));
  EXPECT_EQ(registry.n_registers_at_forget(), 1);  // the re-registration came after the answer
  // The worker counts a registration once the router's answer reaches it, after the router
  // has counted it.
  ASSERT_TRUE(WaitFor([&] { return heartbeat.n_registrations() >= 2; }));
  EXPECT_EQ(heartbeat.n_registrations(), 2);
  // And it goes back to heartbeating.
  const int heartbeats = registry.n_heartbeats();
  ASSERT_TRUE(WaitFor([&] { return registry.n_heartbeats() >= heartbeats + 2; }));
  EXPECT_EQ(registry.n_registers(), 2);
  heartbeat.Stop();
  server->Shutdown();
}

TEST(WorkerHeartbeatTest, RegistersWhenTheRouterAppearsLate) {
  // Find a free port, then leave it closed while the client starts.
  FakeRegistry placeholder(20);
  int port = 0;
  StartServer(&placeholder, 0, &port)->Shutdown();
  ASSERT_NE(port, 0);

  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(0); });
  std::future<absl::Status> started =
      std::async(std::launch::async, [&] { return heartbeat.Start(); });
  ASSERT_EQ(started.wait_for(milliseconds(600)), std::future_status::timeout);
  EXPECT_FALSE(heartbeat.registered());

  FakeRegistry registry(/*interval_ms=*/20);
  int bound = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, port, &bound);
  ASSERT_EQ(bound, port);
  ASSERT_EQ(started.wait_for(milliseconds(5000)), std::future_status::ready);
  EXPECT_TRUE(started.get().ok());
  EXPECT_EQ(registry.n_registers(), 1);
  ASSERT_TRUE(WaitFor([&] { return registry.n_heartbeats() >= 1; }));
  heartbeat.Stop();
  server->Shutdown();
}

TEST(WorkerHeartbeatTest, RegistersAgainAfterTheRouterComesBack) {
  auto first = std::make_unique<FakeRegistry>(20);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(first.get(), 0, &port);
  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(0); });
  ASSERT_TRUE(heartbeat.Start().ok());
  server->Shutdown();
  server.reset();
  ASSERT_TRUE(WaitFor([&] { return !heartbeat.registered(); }));

  FakeRegistry second(20);  // a restarted router with an empty table
  int bound = 0;
  server = StartServer(&second, port, &bound);
  ASSERT_EQ(bound, port);
  ASSERT_TRUE(WaitFor([&] { return second.n_registers() >= 1 && heartbeat.registered(); }));
  ASSERT_TRUE(WaitFor([&] { return second.n_heartbeats() >= 1; }));
  heartbeat.Stop();
  server->Shutdown();
}

TEST(WorkerHeartbeatTest, StartGivesUpAfterItsBoundNamingTheRouter) {
  FakeRegistry placeholder(20);
  int port = 0;
  StartServer(&placeholder, 0, &port)->Shutdown();
  WorkerHeartbeatOptions options = OptionsFor(port);
  options.register_timeout = milliseconds(300);
  WorkerHeartbeat heartbeat(options, [] { return LoadWithQueue(0); });
  const absl::Status status = heartbeat.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(status.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << status;
  EXPECT_EQ(heartbeat.Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(WorkerHeartbeatTest, StopIsPromptEvenWithALongInterval) {
  FakeRegistry registry(/*interval_ms=*/60000);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(0); });
  ASSERT_TRUE(heartbeat.Start().ok());
  const auto start = Clock::now();
  heartbeat.Stop();
  EXPECT_LT(Clock::now() - start, milliseconds(500));
  heartbeat.Stop();  // idempotent
  server->Shutdown();
}

TEST(WorkerHeartbeatTest, DeregisterStopsTheHeartbeatsAndNamesTheWorkerAndItsAddress) {
  FakeRegistry registry(/*interval_ms=*/20);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(0); });
  ASSERT_TRUE(heartbeat.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return registry.n_heartbeats() >= 1; }));
  const absl::Status status = heartbeat.Deregister();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(registry.n_deregisters(), 1);
  EXPECT_EQ(registry.last_deregister().worker_id(), "prefill-test");
  EXPECT_EQ(registry.last_deregister().address(), "127.0.0.1:4242");
  // No heartbeat (which would be answered registered=false) nor registration follows.
  const int heartbeats = registry.n_heartbeats();
  std::this_thread::sleep_for(milliseconds(200));  // 10 heartbeat intervals
  EXPECT_EQ(registry.n_heartbeats(), heartbeats);
  EXPECT_EQ(registry.n_registers(), 1);
  server->Shutdown();
}

TEST(WorkerHeartbeatTest, DeregisterWithNoRouterFailsWithinTheCallTimeoutNamingTheRouter) {
  FakeRegistry placeholder(20);
  int port = 0;
  StartServer(&placeholder, 0, &port)->Shutdown();  // a port nothing listens on
  WorkerHeartbeatOptions options = OptionsFor(port);
  options.rpc_timeout = milliseconds(300);
  WorkerHeartbeat heartbeat(options, [] { return LoadWithQueue(0); });
  const auto start = Clock::now();
  const absl::Status status = heartbeat.Deregister();
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("Deregister with the router at 127.0.0.1:" +
                                  std::to_string(port)),
            std::string::npos)
      << status;
}

const grpc::Status kRefusal(grpc::StatusCode::FAILED_PRECONDITION,
                            "worker prefill-test runs model fingerprint aaa (a.bin) but the "
                            "router's model is bbb (b.gguf)");

TEST(WorkerHeartbeatTest, ARefusalIsFinalAndStartReturnsTheRoutersMessage) {
  FakeRegistry registry(/*interval_ms=*/20);
  registry.FailRegistrations(1000, kRefusal);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeatOptions options = OptionsFor(port);
  options.register_retry = milliseconds(20);
  WorkerHeartbeat heartbeat(options, [] { return LoadWithQueue(0); });
  const auto start = Clock::now();
  const absl::Status status = heartbeat.Start();
  EXPECT_LT(Clock::now() - start, milliseconds(2000));  // not the 5 s register_timeout
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("the router at 127.0.0.1:" + std::to_string(port) +
                                  " refused this worker: " + kRefusal.error_message()),
            std::string::npos)
      << status;
  EXPECT_EQ(heartbeat.refusal(), status);
  EXPECT_FALSE(heartbeat.registered());
  std::this_thread::sleep_for(milliseconds(300));  // 15 retry periods
  EXPECT_EQ(registry.n_registers(), 1);            // asked once, never again
  heartbeat.Stop();
  server->Shutdown();
}

TEST(WorkerHeartbeatTest, OtherRegistrationErrorsAreRetried) {
  FakeRegistry registry(/*interval_ms=*/20);
  registry.FailRegistrations(2, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad"));
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeatOptions options = OptionsFor(port);
  options.register_retry = milliseconds(20);
  WorkerHeartbeat heartbeat(options, [] { return LoadWithQueue(0); });
  ASSERT_TRUE(heartbeat.Start().ok());
  EXPECT_EQ(registry.n_registers(), 3);
  EXPECT_TRUE(heartbeat.refusal().ok());
  heartbeat.Stop();
  server->Shutdown();
}

TEST(WorkerHeartbeatTest, ARefusedReRegistrationEndsTheHeartbeat) {
  FakeRegistry registry(/*interval_ms=*/20);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(0); });
  ASSERT_TRUE(heartbeat.Start().ok());
  EXPECT_TRUE(heartbeat.refusal().ok());
  // A router restarted with another model forgets the worker, then refuses it.
  registry.FailRegistrations(1000, kRefusal);
  registry.ForgetOnce();
  ASSERT_TRUE(WaitFor([&] { return !heartbeat.refusal().ok(); }));
  EXPECT_EQ(heartbeat.refusal().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(heartbeat.registered());
  const int registers = registry.n_registers();
  const int heartbeats = registry.n_heartbeats();
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(registry.n_registers(), registers);  // the thread has ended
  EXPECT_EQ(registry.n_heartbeats(), heartbeats);
  heartbeat.Stop();
  server->Shutdown();
}

// Sends SIGTERM to `thread` once `ready` holds and then `settle` has passed (time for the
// waiting thread's 100 ms poll to log what it saw).
std::thread SignalWhen(pthread_t thread, std::function<bool()> ready, milliseconds settle) {
  return std::thread([thread, ready = std::move(ready), settle] {
    WaitFor(ready, milliseconds(10000));
    std::this_thread::sleep_for(settle);
    pthread_kill(thread, SIGTERM);
  });
}

TEST(WaitForShutdownWhileRegisteringTest, LogsEachRegistrationAndStopsTheHeartbeatOnASignal) {
  const ShutdownSignals signals;  // SIGTERM to this thread is now taken by Wait, not fatal
  FakeRegistry registry(/*interval_ms=*/20);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(1); });
  // Once registered, the router forgets the worker (as after a restart): it registers again.
  bool forgot = false;
  std::thread killer = SignalWhen(
      pthread_self(),
      [&] {
        if (!forgot && heartbeat.registered()) {
          registry.ForgetOnce();
          forgot = true;
        }
        return heartbeat.n_registrations() >= 2;
      },
      milliseconds(1000));
  testing::internal::CaptureStderr();
  const absl::StatusOr<int> signal_number =
      WaitForShutdownWhileRegistering(signals, &heartbeat, "test-worker");
  const std::string log = testing::internal::GetCapturedStderr();
  killer.join();
  EXPECT_EQ(signal_number.value_or(0), SIGTERM) << signal_number.status();
  const std::string line = "registered with the router at 127.0.0.1:" + std::to_string(port) +
                           " as prefill-test (127.0.0.1:4242)";
  EXPECT_NE(log.find(line), std::string::npos) << log;
  EXPECT_NE(log.find(line + ", registration 2\n"), std::string::npos)
      << "the re-registration was not logged:\n"
      << log;
  // Stopped: no heartbeat after the return.
  const int heartbeats = registry.n_heartbeats();
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(registry.n_heartbeats(), heartbeats);
  server->Shutdown();
}

TEST(WaitForShutdownWhileRegisteringTest, ARouterThatIsNotUpIsLoggedAndTheWaitGoesOn) {
  const ShutdownSignals signals;
  FakeRegistry placeholder(20);
  int port = 0;
  StartServer(&placeholder, 0, &port)->Shutdown();  // a port nothing listens on
  WorkerHeartbeatOptions options = OptionsFor(port);
  options.register_timeout = milliseconds(200);
  WorkerHeartbeat heartbeat(options, [] { return LoadWithQueue(0); });
  std::thread killer = SignalWhen(pthread_self(), [] { return true; }, milliseconds(1500));
  testing::internal::CaptureStderr();
  const auto start = Clock::now();
  const absl::StatusOr<int> signal_number =
      WaitForShutdownWhileRegistering(signals, &heartbeat, "test-worker");
  const auto waited = Clock::now() - start;
  const std::string log = testing::internal::GetCapturedStderr();
  killer.join();
  EXPECT_EQ(signal_number.value_or(0), SIGTERM) << signal_number.status();
  EXPECT_GE(waited, milliseconds(1000));  // the failed registration did not end the wait
  EXPECT_NE(log.find("test-worker: worker prefill-test could not register"), std::string::npos)
      << log;
  EXPECT_NE(log.find("(still trying in the background)"), std::string::npos) << log;
  EXPECT_FALSE(heartbeat.registered());
}

// Ends a wait that the code under test should end by itself: sends SIGTERM to `thread` (the
// wait then returns a signal number, which the test rejects) unless destroyed within 10 s.
class Watchdog {
 public:
  explicit Watchdog(pthread_t thread)
      : thread_([this, thread] {
          std::unique_lock<std::mutex> lock(mutex_);
          if (!cv_.wait_for(lock, milliseconds(10000), [this] { return done_; })) {
            pthread_kill(thread, SIGTERM);
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

TEST(WaitForShutdownWhileRegisteringTest, ARefusalAtStartUpEndsTheWaitWithoutASignal) {
  const ShutdownSignals signals;
  FakeRegistry registry(/*interval_ms=*/20);
  registry.FailRegistrations(1000, kRefusal);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(0); });
  testing::internal::CaptureStderr();
  const auto start = Clock::now();
  absl::StatusOr<int> result;
  {
    const Watchdog watchdog(pthread_self());
    result = WaitForShutdownWhileRegistering(signals, &heartbeat, "test-worker");
  }
  const auto waited = Clock::now() - start;
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_LT(waited, milliseconds(3000));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
  EXPECT_NE(result.status().message().find(kRefusal.error_message()), std::string::npos)
      << result.status();
  // Not mistaken for a router that is down: the caller reports the refusal and exits.
  EXPECT_EQ(log.find("still trying"), std::string::npos) << log;
  EXPECT_EQ(registry.n_registers(), 1);
  server->Shutdown();
}

TEST(WaitForShutdownWhileRegisteringTest, ARefusedReRegistrationEndsTheWaitWithoutASignal) {
  const ShutdownSignals signals;
  FakeRegistry registry(/*interval_ms=*/20);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(&registry, 0, &port);
  WorkerHeartbeat heartbeat(OptionsFor(port), [] { return LoadWithQueue(0); });
  // Once registered, the router (as if restarted with another model) forgets and refuses it.
  std::thread router_restart([&] {
    WaitFor([&] { return heartbeat.registered(); }, milliseconds(10000));
    registry.FailRegistrations(1000, kRefusal);
    registry.ForgetOnce();
  });
  testing::internal::CaptureStderr();
  absl::StatusOr<int> result;
  {
    const Watchdog watchdog(pthread_self());
    result = WaitForShutdownWhileRegistering(signals, &heartbeat, "test-worker");
  }
  const std::string log = testing::internal::GetCapturedStderr();
  router_restart.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
  EXPECT_NE(log.find("registered with the router"), std::string::npos) << log;
  EXPECT_EQ(registry.n_registers(), 2);  // the first, accepted; the refused one
  const int heartbeats = registry.n_heartbeats();
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(registry.n_heartbeats(), heartbeats);  // stopped
  server->Shutdown();
}

TEST(WaitForShutdownWhileRegisteringTest, WithoutARouterItJustWaits) {
  const ShutdownSignals signals;
  std::thread killer = SignalWhen(pthread_self(), [] { return true; }, milliseconds(200));
  EXPECT_EQ(WaitForShutdownWhileRegistering(signals, nullptr, "test-worker").value_or(0), SIGTERM);
  killer.join();
}

}  // namespace
}  // namespace pdserve::rpc
