// The checks behind every handler: who is a cluster peer, which API key is valid, and what each
// refusal says. On plain values; secure_channel_test.cc runs them behind real servers.

#include "common/rpc/call_authorization.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pdserve::rpc {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "cluster-secret-0123456789";
constexpr char kKey[] = "api-key-abcdefghijklmnop";

SecurityPolicy SecretPolicy() {
  SecurityPolicy policy;
  policy.cluster_secret = kSecret;
  return policy;
}

SecurityPolicy KeysPolicy() {
  SecurityPolicy policy;
  policy.api_keys = {"another-key-0000000000", kKey};
  return policy;
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_FALSE(ConstantTimeEquals("a", ""));
  // A prefix repeated to the other's length is not equal to it.
  EXPECT_FALSE(ConstantTimeEquals("ab", "abab"));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), "a"));
}

TEST(AuthorizeClusterCredentialsTest, AnOpenPolicyLetsEveryoneIn) {
  EXPECT_TRUE(SecurityPolicy().cluster_open());
  EXPECT_TRUE(AuthorizeClusterCredentials({}, SecurityPolicy()).ok());
}

TEST(AuthorizeClusterCredentialsTest, SecretMustBePresentAndEqual) {
  ClusterCredentials credentials;
  absl::Status missing = AuthorizeClusterCredentials(credentials, SecretPolicy());
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(missing.message(), HasSubstr("no cluster secret"));
  EXPECT_THAT(missing.message(), HasSubstr("x-pdserve-cluster-secret"));

  credentials.cluster_secret = "cluster-secret-0123456780";
  absl::Status wrong = AuthorizeClusterCredentials(credentials, SecretPolicy());
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(wrong.message(), HasSubstr("wrong cluster secret"));
  EXPECT_THAT(wrong.message(), Not(HasSubstr("cluster-secret-01")));

  credentials.cluster_secret = kSecret;
  EXPECT_TRUE(AuthorizeClusterCredentials(credentials, SecretPolicy()).ok());
}

TEST(AuthorizeClusterCredentialsTest, CertificateRequiredWhenThePolicySaysSo) {
  SecurityPolicy policy;
  policy.require_cluster_certificate = true;
  absl::Status status = AuthorizeClusterCredentials({}, policy);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(status.message(), HasSubstr("no client certificate signed by the cluster CA"));
  EXPECT_TRUE(AuthorizeClusterCredentials({.certified = true}, policy).ok());
}

TEST(AuthorizeClusterCredentialsTest, CertificateAndSecretBothNeededWhenBothConfigured) {
  SecurityPolicy policy = SecretPolicy();
  policy.require_cluster_certificate = true;
  EXPECT_EQ(AuthorizeClusterCredentials({.certified = true}, policy).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AuthorizeClusterCredentials({.cluster_secret = kSecret}, policy).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(
      AuthorizeClusterCredentials({.certified = true, .cluster_secret = kSecret}, policy).ok());
}

TEST(AuthorizeClusterCredentialsTest, APublicClientWithAValidKeyIsDeniedNotUnauthenticated) {
  SecurityPolicy policy = SecretPolicy();
  policy.api_keys = {kKey};
  absl::Status denied = AuthorizeClusterCredentials(
      {.authorization = std::string("Bearer ") + kKey}, policy);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(), HasSubstr("API key allows the public API only"));
  // An invalid key proves nothing: still unauthenticated.
  EXPECT_EQ(AuthorizeClusterCredentials({.authorization = "Bearer nope-nope-nope-nope"}, policy)
                .code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(AuthorizeAuthorizationHeaderTest, NoKeysConfiguredLetsEveryoneIn) {
  EXPECT_TRUE(AuthorizeAuthorizationHeader(std::nullopt, SecurityPolicy()).ok());
  EXPECT_TRUE(AuthorizeAuthorizationHeader("Bearer whatever", SecurityPolicy()).ok());
}

TEST(AuthorizeAuthorizationHeaderTest, AcceptsAnyConfiguredKey) {
  EXPECT_TRUE(AuthorizeAuthorizationHeader(std::string("Bearer ") + kKey, KeysPolicy()).ok());
  EXPECT_TRUE(AuthorizeAuthorizationHeader("Bearer another-key-0000000000", KeysPolicy()).ok());
  // The scheme is case-insensitive (RFC 7235); surrounding spaces are ignored.
  EXPECT_TRUE(AuthorizeAuthorizationHeader(std::string(" bearer  ") + kKey + " ", KeysPolicy())
                  .ok());
}

TEST(AuthorizeAuthorizationHeaderTest, EachRefusalSaysWhatIsWrongWithoutEchoingTheKey) {
  absl::Status missing = AuthorizeAuthorizationHeader(std::nullopt, KeysPolicy());
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(missing.message(), HasSubstr("missing API key"));

  absl::Status empty = AuthorizeAuthorizationHeader("Bearer ", KeysPolicy());
  EXPECT_EQ(empty.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(empty.message(), HasSubstr("missing API key"));

  absl::Status scheme = AuthorizeAuthorizationHeader(std::string("Basic ") + kKey, KeysPolicy());
  EXPECT_EQ(scheme.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(scheme.message(), HasSubstr("not 'Bearer <key>'"));
  EXPECT_THAT(scheme.message(), Not(HasSubstr(kKey)));

  const std::string guess = "api-key-abcdefghijklmnoq";
  absl::Status wrong = AuthorizeAuthorizationHeader("Bearer " + guess, KeysPolicy());
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(wrong.message(), HasSubstr("wrong API key"));
  EXPECT_THAT(wrong.message(), Not(HasSubstr(guess)));
  // A key that is a prefix of a valid one is wrong.
  EXPECT_FALSE(AuthorizeAuthorizationHeader("Bearer api-key-abc", KeysPolicy()).ok());
}

}  // namespace
}  // namespace pdserve::rpc
