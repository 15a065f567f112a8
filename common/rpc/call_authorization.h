#pragma once
// Who may call what. A handler calls one of these first and returns its status (ToGrpcStatus)
// when it is not OK:
//   AuthorizeClusterPeer  worker RPCs (Decode, Prefill, PushKv) and the router's WorkerRegistry:
//                         only the cluster's own processes.
//   AuthorizePublicCall   the router's public API (Router.*): clients holding an API key.
//
// Status codes, and when each is right (gRPC's definitions):
//   UNAUTHENTICATED    the caller did not prove who it is: no credential, or a wrong one (no
//                      client certificate, no or a wrong cluster secret, no or a wrong API key).
//   PERMISSION_DENIED  the caller proved who it is, and that identity may not make this call: a
//                      public client with a valid API key calling a cluster RPC.
// Messages say what was missing or wrong and how to supply it; they never echo a key or secret.
// Secrets and keys are compared in constant time.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/server_context.h"

namespace pdserve::rpc {

// What a server requires of its callers; the default requires nothing (plaintext, open).
struct SecurityPolicy {
  // Cluster calls must come over TLS with a client certificate the cluster CA signed (the server's
  // credentials verify it; see ClusterSecurity::ServerCredentials).
  bool require_cluster_certificate = false;
  // Non-empty: cluster calls must carry it as kClusterSecretMetadataKey (channel_cache.h).
  std::string cluster_secret;
  // Non-empty: public calls must carry "authorization: Bearer <one of these>".
  std::vector<std::string> api_keys;

  // True when cluster calls need no credential (the checks then read nothing from the call).
  bool cluster_open() const { return !require_cluster_certificate && cluster_secret.empty(); }
};

// What a cluster call presented, taken from its context (or from elsewhere, e.g. a test).
struct ClusterCredentials {
  bool certified = false;                    // a client certificate the cluster CA signed
  std::optional<std::string> cluster_secret; // the kClusterSecretMetadataKey value, if any
  std::optional<std::string> authorization;  // the "authorization" value, if any
};

// OK when the caller is one of the cluster's processes under `policy`; see the top of the file.
absl::Status AuthorizeClusterPeer(const grpc::ServerContextBase& context,
                                  const SecurityPolicy& policy);
absl::Status AuthorizeClusterCredentials(const ClusterCredentials& credentials,
                                         const SecurityPolicy& policy);

// OK when the call carries a valid API key, or `policy` has none. The key comes in the
// "authorization" metadata entry as "Bearer <key>".
absl::Status AuthorizePublicCall(const grpc::ServerContextBase& context,
                                 const SecurityPolicy& policy);
// The same check on the value of an Authorization header (HTTP or gRPC), nullopt when absent:
// the one function every front end (gRPC, HTTP) uses.
absl::Status AuthorizeAuthorizationHeader(std::optional<absl::string_view> authorization,
                                          const SecurityPolicy& policy);

// a == b, in a time that depends on b.size() only, not on where they differ: pass the secret
// (or key) as `b`, what the caller sent as `a`.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace pdserve::rpc
