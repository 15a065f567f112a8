#include "cli/worker_flags.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cli/parse_args.h"

namespace pdserve::cli {
namespace {

absl::StatusOr<WorkerServingFlags> FlagsFrom(std::vector<std::string> args) {
  ArgParser parser;
  AddWorkerServingFlags(parser);
  if (absl::Status s = ParseArgs(parser, std::move(args)); !s.ok()) return s;
  return WorkerServingFlagsFrom(parser);
}

kv::KvLayout SmallLayout() {
  kv::KvLayout layout;
  layout.n_layers = 2;
  layout.n_kv_heads = 1;
  layout.head_dim = 8;
  return layout;
}

TEST(WorkerServingFlagsTest, DefaultsToLoopbackAndNoRouter) {
  absl::StatusOr<WorkerServingFlags> flags = FlagsFrom({});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->listen.ToString(), "127.0.0.1:0");
  EXPECT_TRUE(flags->router.empty());
  EXPECT_TRUE(flags->worker_id.empty());
  EXPECT_TRUE(flags->advertise.empty());
}

TEST(WorkerServingFlagsTest, BadAddressesNameTheirFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--listen", "nonsense"}, "--listen"},
      {{"--listen", "0.0.0.0:99999"}, "--listen"},
      {{"--advertise", "10.0.0.7"}, "--advertise must be HOST:PORT with a port"},
      {{"--advertise", "10.0.0.7:0"}, "--advertise must be HOST:PORT with a port"},
      {{"--router="}, "--router"},
  };
  for (const auto& [args, message] : cases) {
    absl::StatusOr<WorkerServingFlags> flags = FlagsFrom(args);
    EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument) << args[0];
    EXPECT_NE(flags.status().message().find(message), std::string::npos) << flags.status();
  }
}

TEST(WorkerServingFlagsTest, MetricsPortIsOptionalAndChecked) {
  absl::StatusOr<WorkerServingFlags> absent = FlagsFrom({});
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_FALSE(absent->metrics_port.has_value());
  absl::StatusOr<WorkerServingFlags> picked = FlagsFrom({"--metrics-port", "0"});
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_EQ(picked->metrics_port, 0);
  absl::StatusOr<WorkerServingFlags> given = FlagsFrom({"--metrics-port", "9400"});
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->metrics_port, 9400);
  for (const char* bad : {"-1", "65536", "http", ""}) {
    absl::StatusOr<WorkerServingFlags> flags = FlagsFrom({"--metrics-port", bad});
    EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(flags.status().message().find("--metrics-port"), std::string::npos)
        << flags.status();
  }
}

TEST(MakeWorkerHeartbeatTest, NoRouterNoHeartbeat) {
  absl::StatusOr<WorkerServingFlags> flags = FlagsFrom({});
  ASSERT_TRUE(flags.ok());
  absl::StatusOr<std::unique_ptr<rpc::ServingServer>> server =
      rpc::ServingServer::Start({.listen = "127.0.0.1:0"}, {});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(MakeWorkerHeartbeat(*flags, **server, v1::WORKER_ROLE_DECODE, SmallLayout(),
                                "/models/m.gguf", "", [] { return v1::WorkerLoad(); }),
            nullptr);
}

TEST(MakeWorkerHeartbeatTest, DefaultsComeFromTheBoundServer) {
  absl::StatusOr<WorkerServingFlags> flags =
      FlagsFrom({"--listen", "0.0.0.0:0", "--router", "router:7000"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  absl::StatusOr<std::unique_ptr<rpc::ServingServer>> server =
      rpc::ServingServer::Start({.listen = flags->listen.ToString()}, {});
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->bound().port;
  std::unique_ptr<rpc::WorkerHeartbeat> heartbeat =
      MakeWorkerHeartbeat(*flags, **server, v1::WORKER_ROLE_DECODE, SmallLayout(),
                          "/models/stories260K.gguf", "0123456789abcdef0123456789abcdef",
                          [] { return v1::WorkerLoad(); });
  ASSERT_NE(heartbeat, nullptr);
  const rpc::WorkerHeartbeatOptions& options = heartbeat->options();
  EXPECT_EQ(options.router_address, "router:7000");
  EXPECT_EQ(options.worker_id, "decode-" + std::to_string(port));
  EXPECT_EQ(options.role, v1::WORKER_ROLE_DECODE);
  // A wildcard listen host is no address for others: the loopback one is given out instead.
  EXPECT_EQ(options.advertised_address, "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(options.model_name, "stories260K.gguf");
  EXPECT_EQ(options.kv_layout.n_layers(), 2);
  EXPECT_EQ(options.kv_layout.head_dim(), 8);
  // The router refuses a worker whose model differs from its own by this field.
  EXPECT_EQ(options.kv_layout.model_fingerprint(), "0123456789abcdef0123456789abcdef");
}

TEST(MakeWorkerHeartbeatTest, GivenIdAndAddressWin) {
  absl::StatusOr<WorkerServingFlags> flags =
      FlagsFrom({"--router", "router:7000", "--worker-id", "pf-1", "--advertise", "10.0.0.7:5000"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  absl::StatusOr<std::unique_ptr<rpc::ServingServer>> server =
      rpc::ServingServer::Start({.listen = "127.0.0.1:0"}, {});
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<rpc::WorkerHeartbeat> heartbeat =
      MakeWorkerHeartbeat(*flags, **server, v1::WORKER_ROLE_PREFILL, SmallLayout(), "m.bin", "",
                          [] { return v1::WorkerLoad(); });
  ASSERT_NE(heartbeat, nullptr);
  EXPECT_EQ(heartbeat->options().worker_id, "pf-1");
  EXPECT_EQ(heartbeat->options().advertised_address, "10.0.0.7:5000");
  EXPECT_EQ(heartbeat->options().role, v1::WORKER_ROLE_PREFILL);
}

}  // namespace
}  // namespace pdserve::cli
