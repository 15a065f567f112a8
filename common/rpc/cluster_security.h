#pragma once
// A process's cluster security, loaded once at start-up from files: TLS material (its
// certificate and key, the cluster CA), the cluster secret, the router's API keys. From it come
// the credentials of its server port, of every channel to a peer, and the SecurityPolicy its
// handlers check (call_authorization.h). docs/security.md has the threat model.
//
// Modes (the router and every worker of a cluster must use the same one):
//   plaintext, open   nothing given: anyone who reaches a port may call it.
//   cluster secret    a secret file: every cluster channel sends it, every cluster RPC checks it.
//                     Traffic stays plaintext: it keeps out callers who cannot read the
//                     network, not eavesdroppers.
//   TLS               certificate, key and CA: every port is TLS. Worker ports require a client
//                     certificate the CA signed (mutual TLS); the router's port asks for one and
//                     verifies it when presented, so that workers prove they are the cluster while
//                     public clients need none. A secret may be added on top.
// API keys (router only) guard the public API in any mode; over plaintext they travel in clear.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/rpc/call_authorization.h"
#include "common/rpc/channel_cache.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace pdserve::rpc {

// Paths of the files; empty: not used.
struct SecurityOptions {
  // PEM. The certificate (chain) and private key of this process, and the CA certificate that
  // signed the certificates of every process in the cluster. All three or none.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;
  // The cluster secret: the file's text without surrounding whitespace, at least 16 printable
  // ASCII characters.
  std::string cluster_secret_file;
  // Router only: API keys, one a line (blank lines and lines starting with '#' are skipped),
  // each at least 16 printable ASCII characters without spaces.
  std::string api_keys_file;
};

// Which client certificates a TLS server port asks for.
enum class ClientCertificates {
  kVerifyIfPresented,  // the router: workers present one, public clients none
  kRequire,            // workers: only cluster processes call them
};

class ClusterSecurity {
 public:
  // Plaintext and open: what a process runs with when no option is given.
  ClusterSecurity() = default;

  // Reads and checks every file given. InvalidArgument naming the file and what is wrong with
  // it: unreadable, no PEM certificate or key in it, a key that does not match the
  // certificate, a certificate the CA did not sign or that is not valid now, a secret or key
  // that is too short or not printable, a TLS file given without the other two.
  static absl::StatusOr<ClusterSecurity> Load(const SecurityOptions& options);

  bool tls() const { return !cert_pem_.empty(); }
  // This process's certificate (chain) and key, PEM; empty without TLS. For its other TLS
  // servers (the router's HTTPS API).
  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& key_pem() const { return key_pem_; }
  const SecurityPolicy& policy() const { return policy_; }

  // For the process's server port: SSL with this process's certificate when tls(), else
  // plaintext.
  std::shared_ptr<grpc::ServerCredentials> ServerCredentials(ClientCertificates clients) const;
  // For every channel to a peer: SSL trusting the cluster CA and presenting this process's
  // certificate when tls(), and the cluster secret when there is one.
  ChannelOptions ClusterChannelOptions() const;

  // One line for the start-up log, e.g. "security: TLS (mutual for cluster calls), cluster
  // secret, 2 API keys"; it names no secret.
  std::string Describe() const;

 private:
  SecurityPolicy policy_;
  std::string cert_pem_;
  std::string key_pem_;
  std::string ca_pem_;
};

// For a public client of the router (pdserve-client --tls-ca): TLS trusting the CA in `ca_file`,
// no client certificate. InvalidArgument naming the file when it is unreadable or holds no PEM
// certificate.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PublicClientCredentials(
    const std::string& ca_file);

}  // namespace pdserve::rpc
