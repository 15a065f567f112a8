#include "common/rpc/cluster_security.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpcpp/security/credentials.h"

namespace pdserve::rpc {
namespace {

constexpr size_t kMinSecretChars = 16;

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };
struct X509Free { void operator()(X509* x) const { X509_free(x); } };
struct KeyFree { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
struct StoreFree { void operator()(X509_STORE* s) const { X509_STORE_free(s); } };
struct StoreCtxFree { void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); } };
using X509Ptr = std::unique_ptr<X509, X509Free>;

// `what` names the file's role in messages, e.g. "the TLS private key".
absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", what, " '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", what, " '", path, "'"));
  }
  return text.str();
}

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& text) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Every certificate in `pem`, in order.
std::vector<X509Ptr> ParseCertificates(const std::string& pem) {
  std::vector<X509Ptr> certificates;
  auto bio = MemoryBio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certificates.emplace_back(x);
  }
  ERR_clear_error();  // the read past the last one leaves an error queued
  return certificates;
}

// Refuses encrypted keys instead of asking for a passphrase on the terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

absl::Status CheckValidNow(X509* certificate, absl::string_view what, const std::string& path) {
  if (X509_cmp_current_time(X509_get0_notBefore(certificate)) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' is not valid yet (check the clocks)"));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(certificate)) < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "' has expired"));
  }
  return absl::OkStatus();
}

// The certificate chain, its key and the CA: each parses, the key is the certificate's, the CA
// signed the certificate and both are valid now. Catches a swapped or stale file at start-up
// instead of as a failed handshake on the first call.
absl::Status CheckTlsFiles(const SecurityOptions& options, const std::string& cert_pem,
                           const std::string& key_pem, const std::string& ca_pem) {
  std::vector<X509Ptr> chain = ParseCertificates(cert_pem);
  if (chain.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the TLS certificate '", options.tls_cert_file,
                                                   "' holds no PEM certificate"));
  }
  std::vector<X509Ptr> authorities = ParseCertificates(ca_pem);
  if (authorities.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the cluster CA '", options.tls_ca_file,
                                                   "' holds no PEM certificate"));
  }
  auto key_bio = MemoryBio(key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the TLS private key '", options.tls_key_file,
        "' holds no PEM private key (an encrypted key is not supported)"));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS private key '", options.tls_key_file,
                     "' does not belong to the certificate '", options.tls_cert_file, "'"));
  }
  if (absl::Status s = CheckValidNow(chain.front().get(), "the TLS certificate",
                                     options.tls_cert_file);
      !s.ok()) {
    return s;
  }
  for (const X509Ptr& authority : authorities) {
    if (absl::Status s = CheckValidNow(authority.get(), "a certificate of the cluster CA",
                                       options.tls_ca_file);
        !s.ok()) {
      return s;
    }
  }

  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  for (const X509Ptr& authority : authorities) X509_STORE_add_cert(store.get(), authority.get());
  STACK_OF(X509)* intermediates = sk_X509_new_null();
  for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(intermediates, chain[i].get());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> context(X509_STORE_CTX_new());
  X509_STORE_CTX_init(context.get(), store.get(), chain.front().get(), intermediates);
  const bool verified = X509_verify_cert(context.get()) == 1;
  const int error = X509_STORE_CTX_get_error(context.get());
  sk_X509_free(intermediates);  // the certificates stay owned by `chain`
  ERR_clear_error();
  if (!verified) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the TLS certificate '", options.tls_cert_file, "' is not signed by the cluster CA '",
        options.tls_ca_file, "': ", X509_verify_cert_error_string(error)));
  }
  return absl::OkStatus();
}

// A secret or key: printable ASCII (a gRPC metadata value, an HTTP header), no spaces, long
// enough not to be guessed. `what` names it and its file.
absl::Status CheckSecretText(absl::string_view text, absl::string_view what) {
  for (const char c : text) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " holds a character that is not printable ASCII or is a space"));
    }
  }
  if (text.size() < kMinSecretChars) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is ", text.size(),
                                                   " characters long: at least ",
                                                   kMinSecretChars, " are needed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> LoadClusterSecret(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path, "the cluster secret file");
  if (!text.ok()) return text.status();
  std::string secret(absl::StripAsciiWhitespace(*text));
  if (secret.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the cluster secret file '", path,
                                                   "' is empty"));
  }
  if (absl::Status s = CheckSecretText(secret, absl::StrCat("the cluster secret in '", path, "'"));
      !s.ok()) {
    return s;
  }
  return secret;
}

absl::StatusOr<std::vector<std::string>> LoadApiKeys(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path, "the API keys file");
  if (!text.ok()) return text.status();
  std::vector<std::string> keys;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (absl::Status s = CheckSecretText(
            line, absl::StrCat("the API key on line ", line_number, " of '", path, "'"));
        !s.ok()) {
      return s;
    }
    keys.emplace_back(line);
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the API keys file '", path, "' holds no key (one a line)"));
  }
  return keys;
}

}  // namespace

absl::StatusOr<ClusterSecurity> ClusterSecurity::Load(const SecurityOptions& options) {
  ClusterSecurity security;
  const int n_tls_files = !options.tls_cert_file.empty() + !options.tls_key_file.empty() +
                          !options.tls_ca_file.empty();
  if (n_tls_files != 0 && n_tls_files != 3) {
    std::vector<std::string> missing;
    if (options.tls_cert_file.empty()) missing.push_back("its certificate (--tls-cert)");
    if (options.tls_key_file.empty()) missing.push_back("its private key (--tls-key)");
    if (options.tls_ca_file.empty()) missing.push_back("the cluster CA (--tls-ca)");
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS needs a process's certificate, its private key and the cluster CA together; "
        "missing: ", absl::StrJoin(missing, ", ")));
  }
  if (n_tls_files == 3) {
    absl::StatusOr<std::string> cert = ReadFile(options.tls_cert_file, "the TLS certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile(options.tls_key_file, "the TLS private key");
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> ca = ReadFile(options.tls_ca_file, "the cluster CA");
    if (!ca.ok()) return ca.status();
    if (absl::Status s = CheckTlsFiles(options, *cert, *key, *ca); !s.ok()) return s;
    security.cert_pem_ = *std::move(cert);
    security.key_pem_ = *std::move(key);
    security.ca_pem_ = *std::move(ca);
    security.policy_.require_cluster_certificate = true;
  }
  if (!options.cluster_secret_file.empty()) {
    absl::StatusOr<std::string> secret = LoadClusterSecret(options.cluster_secret_file);
    if (!secret.ok()) return secret.status();
    security.policy_.cluster_secret = *std::move(secret);
  }
  if (!options.api_keys_file.empty()) {
    absl::StatusOr<std::vector<std::string>> keys = LoadApiKeys(options.api_keys_file);
    if (!keys.ok()) return keys.status();
    security.policy_.api_keys = *std::move(keys);
  }
  return security;
}

std::shared_ptr<grpc::ServerCredentials> ClusterSecurity::ServerCredentials(
    ClientCertificates clients) const {
  if (!tls()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      clients == ClientCertificates::kRequire
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = ca_pem_;
  options.pem_key_cert_pairs.push_back({key_pem_, cert_pem_});
  return grpc::SslServerCredentials(options);
}

ChannelOptions ClusterSecurity::ClusterChannelOptions() const {
  ChannelOptions options;
  if (tls()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca_pem_;
    ssl.pem_private_key = key_pem_;
    ssl.pem_cert_chain = cert_pem_;
    options.credentials = grpc::SslCredentials(ssl);
  }
  options.cluster_secret = policy_.cluster_secret;
  return options;
}

std::string ClusterSecurity::Describe() const {
  std::vector<std::string> parts;
  parts.push_back(tls() ? "TLS (mutual for cluster calls)" : "plaintext");
  if (!policy_.cluster_secret.empty()) parts.push_back("cluster secret");
  if (!policy_.api_keys.empty()) {
    parts.push_back(absl::StrCat(policy_.api_keys.size(), " API key",
                                 policy_.api_keys.size() == 1 ? "" : "s"));
  }
  if (!tls() && policy_.cluster_secret.empty()) {
    parts.push_back("cluster calls open to anyone who reaches the port");
  }
  return absl::StrCat("security: ", absl::StrJoin(parts, ", "));
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PublicClientCredentials(
    const std::string& ca_file) {
  absl::StatusOr<std::string> ca = ReadFile(ca_file, "the CA certificate");
  if (!ca.ok()) return ca.status();
  if (ParseCertificates(*ca).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CA certificate '", ca_file, "' holds no PEM certificate"));
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *std::move(ca);
  return grpc::SslCredentials(ssl);
}

}  // namespace pdserve::rpc
