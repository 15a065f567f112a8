#include "common/rpc/call_authorization.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/channel_cache.h"

namespace pdserve::rpc {
namespace {

constexpr char kAuthorizationMetadataKey[] = "authorization";
constexpr absl::string_view kBearerScheme = "Bearer";

std::optional<std::string> MetadataValue(const grpc::ServerContextBase& context,
                                         absl::string_view key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

// True when `key` equals one of `keys`; every key is compared, so the time does not tell which
// (or whether one) matched.
bool MatchesAny(absl::string_view key, const std::vector<std::string>& keys) {
  bool match = false;
  for (const std::string& k : keys) match |= ConstantTimeEquals(key, k);
  return match;
}

constexpr char kHowToAuthenticate[] =
    "cluster calls need the cluster's client certificate (TLS) or its secret";

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Walks `b` whatever `a` is, so that the time depends on b.size() only.
  unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    const unsigned char from_a = a.empty() ? 0 : static_cast<unsigned char>(a[i % a.size()]);
    difference |= from_a ^ static_cast<unsigned char>(b[i]);
  }
  return difference == 0;
}

absl::Status AuthorizeClusterCredentials(const ClusterCredentials& credentials,
                                         const SecurityPolicy& policy) {
  absl::Status missing;
  if (policy.require_cluster_certificate && !credentials.certified) {
    missing = absl::UnauthenticatedError(absl::StrCat(
        "no client certificate signed by the cluster CA: ", kHowToAuthenticate));
  } else if (!policy.cluster_secret.empty() && !credentials.cluster_secret.has_value()) {
    missing = absl::UnauthenticatedError(absl::StrCat("no cluster secret (metadata '",
                                                      kClusterSecretMetadataKey, "'): ",
                                                      kHowToAuthenticate));
  } else if (!policy.cluster_secret.empty() &&
             !ConstantTimeEquals(*credentials.cluster_secret, policy.cluster_secret)) {
    return absl::UnauthenticatedError(absl::StrCat("wrong cluster secret (metadata '",
                                                   kClusterSecretMetadataKey, "')"));
  }
  if (missing.ok()) return absl::OkStatus();
  // A public client that proved who it is may still not make cluster calls.
  if (!policy.api_keys.empty() &&
      AuthorizeAuthorizationHeader(credentials.authorization, policy).ok()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "an API key allows the public API only; ", kHowToAuthenticate));
  }
  return missing;
}

absl::Status AuthorizeClusterPeer(const grpc::ServerContextBase& context,
                                  const SecurityPolicy& policy) {
  if (policy.cluster_open()) return absl::OkStatus();
  ClusterCredentials credentials;
  // With the ports' credentials (ClusterSecurity::ServerCredentials), a client certificate
  // that the cluster CA did not sign fails the handshake: one that is here was verified.
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  credentials.certified = auth != nullptr && auth->IsPeerAuthenticated();
  credentials.cluster_secret = MetadataValue(context, kClusterSecretMetadataKey);
  credentials.authorization = MetadataValue(context, kAuthorizationMetadataKey);
  return AuthorizeClusterCredentials(credentials, policy);
}

absl::Status AuthorizeAuthorizationHeader(std::optional<absl::string_view> authorization,
                                          const SecurityPolicy& policy) {
  if (policy.api_keys.empty()) return absl::OkStatus();
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "missing API key: send the header 'authorization: Bearer <key>'");
  }
  const absl::string_view value = absl::StripAsciiWhitespace(*authorization);
  const size_t space = value.find(' ');
  const absl::string_view scheme = value.substr(0, space);
  if (!absl::EqualsIgnoreCase(scheme, kBearerScheme)) {
    return absl::UnauthenticatedError(
        "the authorization header is not 'Bearer <key>': no API key found in it");
  }
  const absl::string_view key =
      space == absl::string_view::npos
          ? absl::string_view()
          : absl::StripLeadingAsciiWhitespace(value.substr(space + 1));
  if (key.empty()) {
    return absl::UnauthenticatedError("missing API key: the authorization header is 'Bearer' "
                                      "with no key after it");
  }
  if (!MatchesAny(key, policy.api_keys)) {
    return absl::UnauthenticatedError("wrong API key: it is not one of the router's API keys");
  }
  return absl::OkStatus();
}

absl::Status AuthorizePublicCall(const grpc::ServerContextBase& context,
                                 const SecurityPolicy& policy) {
  if (policy.api_keys.empty()) return absl::OkStatus();
  const std::optional<std::string> authorization =
      MetadataValue(context, kAuthorizationMetadataKey);
  if (!authorization.has_value()) return AuthorizeAuthorizationHeader(std::nullopt, policy);
  return AuthorizeAuthorizationHeader(absl::string_view(*authorization), policy);
}

}  // namespace pdserve::rpc
