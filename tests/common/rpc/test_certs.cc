#include "tests/common/rpc/test_certs.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace pdserve::rpc::testing {

std::string TestCerts::WriteFile(const std::string& name, const std::string& text) const {
  const std::string path = absl::StrCat(dir, "/", name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

absl::StatusOr<TestCerts> MakeTestCerts() {
  std::string dir_template =
      absl::StrCat(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp", "/pdserve_certsXXXXXX");
  if (mkdtemp(dir_template.data()) == nullptr) {
    return absl::InternalError("mkdtemp failed for the test certificates");
  }
  TestCerts certs;
  certs.dir = dir_template;
  const std::string command = absl::StrCat("bash '", PDSERVE_ROOT,
                                           "/tests/common/rpc/make_test_certs.sh' '", certs.dir,
                                           "' >'", certs.dir, "/make.log' 2>&1");
  if (const int status = std::system(command.c_str()); status != 0) {
    return absl::InternalError(absl::StrCat("make_test_certs.sh failed (", status, "): ",
                                            ReadText(certs.dir + "/make.log")));
  }
  const auto at = [&](const char* name) { return absl::StrCat(certs.dir, "/", name); };
  certs.ca_pem = at("ca.pem");
  certs.ca_key = at("ca.key");
  certs.node_pem = at("node.pem");
  certs.node_key = at("node.key");
  certs.expired_pem = at("expired.pem");
  certs.expired_key = at("expired.key");
  certs.stranger_ca_pem = at("stranger-ca.pem");
  certs.stranger_pem = at("stranger.pem");
  certs.stranger_key = at("stranger.key");
  return certs;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace pdserve::rpc::testing
