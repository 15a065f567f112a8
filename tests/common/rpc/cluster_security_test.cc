// ClusterSecurity::Load on good and broken files (certificates made by openssl at test time):
// every mistake is an InvalidArgument that names the file and what is wrong with it.

#include "common/rpc/cluster_security.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/rpc/test_certs.h"

namespace pdserve::rpc {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class ClusterSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<testing::TestCerts> certs = testing::MakeTestCerts();
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new testing::TestCerts(*std::move(certs));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(certs_->dir);
    delete certs_;
  }

  static SecurityOptions Tls() {
    return {.tls_cert_file = certs_->node_pem, .tls_key_file = certs_->node_key,
            .tls_ca_file = certs_->ca_pem};
  }
  static absl::Status LoadError(const SecurityOptions& options) {
    absl::StatusOr<ClusterSecurity> security = ClusterSecurity::Load(options);
    EXPECT_FALSE(security.ok());
    if (security.ok()) return absl::OkStatus();
    EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
    return security.status();
  }

  static testing::TestCerts* certs_;
};

testing::TestCerts* ClusterSecurityTest::certs_ = nullptr;

TEST_F(ClusterSecurityTest, NothingGivenIsPlaintextAndOpen) {
  absl::StatusOr<ClusterSecurity> security = ClusterSecurity::Load({});
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_FALSE(security->tls());
  EXPECT_TRUE(security->policy().cluster_open());
  EXPECT_TRUE(security->policy().api_keys.empty());
  const ChannelOptions channel = security->ClusterChannelOptions();
  EXPECT_EQ(channel.credentials, nullptr);
  EXPECT_TRUE(channel.cluster_secret.empty());
  EXPECT_THAT(security->Describe(), HasSubstr("plaintext"));
  EXPECT_THAT(security->Describe(), HasSubstr("open to anyone"));
}

TEST_F(ClusterSecurityTest, TlsFilesLoad) {
  absl::StatusOr<ClusterSecurity> security = ClusterSecurity::Load(Tls());
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_TRUE(security->tls());
  EXPECT_TRUE(security->policy().require_cluster_certificate);
  EXPECT_NE(security->ClusterChannelOptions().credentials, nullptr);
  EXPECT_NE(security->ServerCredentials(ClientCertificates::kRequire), nullptr);
  EXPECT_THAT(security->Describe(), HasSubstr("TLS"));
}

TEST_F(ClusterSecurityTest, TlsNeedsAllThreeFiles) {
  SecurityOptions key_only{.tls_key_file = certs_->node_key};
  EXPECT_THAT(LoadError(key_only).message(),
              HasSubstr("missing: its certificate (--tls-cert), the cluster CA (--tls-ca)"));
  SecurityOptions no_ca = Tls();
  no_ca.tls_ca_file.clear();
  EXPECT_THAT(LoadError(no_ca).message(), HasSubstr("missing: the cluster CA (--tls-ca)"));
}

TEST_F(ClusterSecurityTest, UnreadableFileIsNamed) {
  SecurityOptions options = Tls();
  options.tls_key_file = certs_->dir + "/no-such.key";
  EXPECT_THAT(LoadError(options).message(),
              AllOf(HasSubstr("cannot read the TLS private key"), HasSubstr("no-such.key"),
                    HasSubstr("No such file")));
}

TEST_F(ClusterSecurityTest, FilesThatAreNotPem) {
  SecurityOptions options = Tls();
  options.tls_cert_file = certs_->WriteFile("garbage.pem", "not a certificate\n");
  EXPECT_THAT(LoadError(options).message(),
              AllOf(HasSubstr("garbage.pem"), HasSubstr("holds no PEM certificate")));
  options = Tls();
  options.tls_key_file = certs_->node_pem;  // a certificate where the key should be
  EXPECT_THAT(LoadError(options).message(),
              AllOf(HasSubstr(certs_->node_pem), HasSubstr("holds no PEM private key")));
  options = Tls();
  options.tls_ca_file = certs_->WriteFile("empty-ca.pem", "");
  EXPECT_THAT(LoadError(options).message(),
              AllOf(HasSubstr("the cluster CA"), HasSubstr("empty-ca.pem"),
                    HasSubstr("holds no PEM certificate")));
}

TEST_F(ClusterSecurityTest, KeyOfAnotherCertificate) {
  SecurityOptions options = Tls();
  options.tls_key_file = certs_->stranger_key;
  EXPECT_THAT(LoadError(options).message(),
              AllOf(HasSubstr("does not belong to the certificate"), HasSubstr("stranger.key")));
}

TEST_F(ClusterSecurityTest, CertificateOfAnotherCa) {
  SecurityOptions options{.tls_cert_file = certs_->stranger_pem,
                          .tls_key_file = certs_->stranger_key,
                          .tls_ca_file = certs_->ca_pem};
  EXPECT_THAT(LoadError(options).message(),
              AllOf(HasSubstr("is not signed by the cluster CA"), HasSubstr("stranger.pem")));
}

TEST_F(ClusterSecurityTest, ExpiredCertificate) {
  SecurityOptions options{.tls_cert_file = certs_->expired_pem,
                          .tls_key_file = certs_->expired_key,
                          .tls_ca_file = certs_->ca_pem};
  EXPECT_THAT(LoadError(options).message(),
              AllOf(HasSubstr("expired.pem"), HasSubstr("has expired")));
}

TEST_F(ClusterSecurityTest, ClusterSecretIsTrimmedAndSentByChannels) {
  const std::string path = certs_->WriteFile("secret", "  s3cret-s3cret-s3cret\n\n");
  absl::StatusOr<ClusterSecurity> security = ClusterSecurity::Load({.cluster_secret_file = path});
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_EQ(security->policy().cluster_secret, "s3cret-s3cret-s3cret");
  EXPECT_EQ(security->ClusterChannelOptions().cluster_secret, "s3cret-s3cret-s3cret");
  EXPECT_FALSE(security->policy().cluster_open());
  EXPECT_THAT(security->Describe(), AllOf(HasSubstr("cluster secret"),
                                          Not(HasSubstr("s3cret"))));
}

TEST_F(ClusterSecurityTest, BadClusterSecrets) {
  EXPECT_THAT(LoadError({.cluster_secret_file = certs_->WriteFile("blank", " \n")}).message(),
              AllOf(HasSubstr("blank"), HasSubstr("is empty")));
  EXPECT_THAT(LoadError({.cluster_secret_file = certs_->WriteFile("short", "tooshort\n")})
                  .message(),
              AllOf(HasSubstr("short"), HasSubstr("8 characters long: at least 16")));
  const absl::Status spaced =
      LoadError({.cluster_secret_file = certs_->WriteFile("spaced", "two words two words\n")});
  EXPECT_THAT(spaced.message(), HasSubstr("not printable ASCII or is a space"));
  EXPECT_THAT(spaced.message(), Not(HasSubstr("two words")));
  EXPECT_THAT(LoadError({.cluster_secret_file = certs_->dir + "/none"}).message(),
              HasSubstr("cannot read the cluster secret file"));
}

TEST_F(ClusterSecurityTest, ApiKeysOneALineWithComments) {
  const std::string path = certs_->WriteFile(
      "keys", "# team a\nkey-aaaaaaaaaaaaaaaa\n\n  key-bbbbbbbbbbbbbbbb  \n# old: gone\n");
  absl::StatusOr<ClusterSecurity> security = ClusterSecurity::Load({.api_keys_file = path});
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_THAT(security->policy().api_keys,
              ::testing::ElementsAre("key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb"));
  EXPECT_TRUE(security->policy().cluster_open());  // keys guard the public API only
  EXPECT_THAT(security->Describe(), HasSubstr("2 API keys"));
}

TEST_F(ClusterSecurityTest, BadApiKeys) {
  EXPECT_THAT(LoadError({.api_keys_file = certs_->WriteFile("nokeys", "# none\n\n")}).message(),
              AllOf(HasSubstr("nokeys"), HasSubstr("holds no key")));
  const absl::Status short_key = LoadError(
      {.api_keys_file = certs_->WriteFile("shortkey", "key-aaaaaaaaaaaaaaaa\nabc\n")});
  EXPECT_THAT(short_key.message(),
              AllOf(HasSubstr("line 2"), HasSubstr("shortkey"), HasSubstr("at least 16")));
}

TEST_F(ClusterSecurityTest, PublicClientCredentialsCheckTheCaFile) {
  EXPECT_TRUE(PublicClientCredentials(certs_->ca_pem).ok());
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> bad =
      PublicClientCredentials(certs_->node_key);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("holds no PEM certificate"));
  EXPECT_FALSE(PublicClientCredentials(certs_->dir + "/none.pem").ok());
}

}  // namespace
}  // namespace pdserve::rpc
