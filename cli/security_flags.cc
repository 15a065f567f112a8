#include "cli/security_flags.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace pdserve::cli {
namespace {

// flag name → where its path goes.
struct PathFlag {
  const char* name;
  std::string rpc::SecurityOptions::*path;
};

constexpr PathFlag kPathFlags[] = {
    {"tls-cert", &rpc::SecurityOptions::tls_cert_file},
    {"tls-key", &rpc::SecurityOptions::tls_key_file},
    {"tls-ca", &rpc::SecurityOptions::tls_ca_file},
    {"cluster-secret-file", &rpc::SecurityOptions::cluster_secret_file},
    {"api-keys-file", &rpc::SecurityOptions::api_keys_file},
};

}  // namespace

void AddSecurityFlags(ArgParser& parser, SecurityRole role) {
  parser.AddString("tls-cert", "PEM certificate (chain) of this process: with --tls-key and "
                               "--tls-ca, every port and cluster channel is TLS, cluster calls "
                               "mutual TLS");
  parser.AddString("tls-key", "PEM private key of --tls-cert (not encrypted)");
  parser.AddString("tls-ca", "PEM certificate of the CA that signed every cluster process's "
                             "certificate");
  parser.AddString("cluster-secret-file",
                   "file holding the cluster secret (16+ printable characters): cluster calls "
                   "carry it and must match");
  if (role == SecurityRole::kRouter) {
    parser.AddString("api-keys-file", "file of API keys, one a line: public calls need "
                                      "'authorization: Bearer <key>'");
  }
}

absl::StatusOr<rpc::SecurityOptions> SecurityOptionsFromFlags(const ArgParser& parser) {
  rpc::SecurityOptions options;
  for (const PathFlag& flag : kPathFlags) {
    if (!parser.Has(flag.name)) continue;
    std::string path = parser.GetString(flag.name);
    if (path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag.name, " needs a file path"));
    }
    options.*flag.path = std::move(path);
  }
  return options;
}

absl::StatusOr<rpc::ClusterSecurity> ClusterSecurityFromFlags(const ArgParser& parser) {
  absl::StatusOr<rpc::SecurityOptions> options = SecurityOptionsFromFlags(parser);
  if (!options.ok()) return options.status();
  return rpc::ClusterSecurity::Load(*options);
}

}  // namespace pdserve::cli
