#pragma once
// The security flags of the server binaries (router, prefill and decode workers): TLS files, the
// cluster secret and, for the router, the API keys. docs/security.md explains them.

#include "absl/status/statusor.h"
#include "cli/arg_parser.h"
#include "common/rpc/cluster_security.h"

namespace pdserve::cli {

enum class SecurityRole {
  kRouter,  // also --api-keys-file
  kWorker,
};

// Declares --tls-cert, --tls-key, --tls-ca, --cluster-secret-file and, for the router,
// --api-keys-file.
void AddSecurityFlags(ArgParser& parser, SecurityRole role);

// The paths given; InvalidArgument naming the flag when one is given an empty value.
absl::StatusOr<rpc::SecurityOptions> SecurityOptionsFromFlags(const ArgParser& parser);

// SecurityOptionsFromFlags, then ClusterSecurity::Load: InvalidArgument naming what is wrong
// (the binaries print it and exit 2).
absl::StatusOr<rpc::ClusterSecurity> ClusterSecurityFromFlags(const ArgParser& parser);

}  // namespace pdserve::cli
