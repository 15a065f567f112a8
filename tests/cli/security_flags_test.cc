// The security flags of the server binaries: which flags each role has, the paths they give and
// the errors for a flag without a value or files that do not go together.

#include "cli/security_flags.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/parse_args.h"

namespace pdserve::cli {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<rpc::SecurityOptions> OptionsFrom(SecurityRole role,
                                                 std::vector<std::string> args) {
  ArgParser parser;
  AddSecurityFlags(parser, role);
  if (absl::Status s = ParseArgs(parser, std::move(args)); !s.ok()) return s;
  return SecurityOptionsFromFlags(parser);
}

TEST(SecurityFlagsTest, NoFlagsIsNoSecurity) {
  absl::StatusOr<rpc::SecurityOptions> options = OptionsFrom(SecurityRole::kWorker, {});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->tls_cert_file.empty() && options->tls_key_file.empty() &&
              options->tls_ca_file.empty() && options->cluster_secret_file.empty() &&
              options->api_keys_file.empty());
}

TEST(SecurityFlagsTest, EveryFlagGivesItsPath) {
  absl::StatusOr<rpc::SecurityOptions> options = OptionsFrom(
      SecurityRole::kRouter, {"--tls-cert", "c.pem", "--tls-key=k.pem", "--tls-ca", "ca.pem",
                              "--cluster-secret-file", "secret", "--api-keys-file", "keys"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->tls_cert_file, "c.pem");
  EXPECT_EQ(options->tls_key_file, "k.pem");
  EXPECT_EQ(options->tls_ca_file, "ca.pem");
  EXPECT_EQ(options->cluster_secret_file, "secret");
  EXPECT_EQ(options->api_keys_file, "keys");
}

TEST(SecurityFlagsTest, OnlyTheRouterTakesApiKeys) {
  absl::StatusOr<rpc::SecurityOptions> worker =
      OptionsFrom(SecurityRole::kWorker, {"--api-keys-file", "keys"});
  ASSERT_FALSE(worker.ok());
  EXPECT_THAT(worker.status().message(), HasSubstr("api-keys-file"));
}

TEST(SecurityFlagsTest, AnEmptyPathNamesTheFlag) {
  absl::StatusOr<rpc::SecurityOptions> options =
      OptionsFrom(SecurityRole::kWorker, {"--cluster-secret-file="});
  ASSERT_FALSE(options.ok());
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(options.status().message(), HasSubstr("--cluster-secret-file needs a file path"));
}

TEST(SecurityFlagsTest, LoadingReportsAKeyWithoutItsCertificate) {
  ArgParser parser;
  AddSecurityFlags(parser, SecurityRole::kWorker);
  ASSERT_TRUE(ParseArgs(parser, {"--tls-key", "k.pem"}).ok());
  absl::StatusOr<rpc::ClusterSecurity> security = ClusterSecurityFromFlags(parser);
  ASSERT_FALSE(security.ok());
  EXPECT_THAT(security.status().message(),
              HasSubstr("missing: its certificate (--tls-cert), the cluster CA (--tls-ca)"));
}

TEST(SecurityFlagsTest, UsageListsTheFlags) {
  ArgParser parser;
  AddSecurityFlags(parser, SecurityRole::kRouter);
  const std::string usage = parser.Usage("prog");
  for (const char* flag : {"--tls-cert", "--tls-key", "--tls-ca", "--cluster-secret-file",
                           "--api-keys-file"}) {
    EXPECT_THAT(usage, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace pdserve::cli
