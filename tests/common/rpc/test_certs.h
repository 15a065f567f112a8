#pragma once
// Throw-away certificates for the security tests, made by make_test_certs.sh (openssl CLI) in a
// temporary folder; paths only. Nothing is committed.

#include <string>

#include "absl/status/statusor.h"

namespace pdserve::rpc::testing {

struct TestCerts {
  std::string dir;
  std::string ca_pem, ca_key;            // the cluster CA
  std::string node_pem, node_key;        // signed by it, for 127.0.0.1 / localhost
  std::string expired_pem, expired_key;  // signed by it, expired
  std::string stranger_ca_pem;           // another CA
  std::string stranger_pem, stranger_key;  // signed by the other CA

  // A file in `dir` holding `text` (a secret, keys, a broken PEM); returns its path.
  std::string WriteFile(const std::string& name, const std::string& text) const;
};

// Runs make_test_certs.sh into a new temporary folder. Internal naming the command's exit status
// when openssl fails.
absl::StatusOr<TestCerts> MakeTestCerts();

// The whole text of a file ("" when it cannot be read).
std::string ReadText(const std::string& path);

}  // namespace pdserve::rpc::testing
