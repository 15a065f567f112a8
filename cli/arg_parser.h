#pragma once
// A small command-line parser for pdserve's tools: `--name value`, `--name=value`, boolean
// `--name`, repeatable flags; every problem is a message for the user, never an exit or abort.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pdserve::cli {

class ArgParser {
 public:
  // Declares flags before Parse. `help` is shown by Usage().
  void AddString(const std::string& name, const std::string& help, bool repeatable = false);
  void AddBool(const std::string& name, const std::string& help);

  // InvalidArgument for unknown flags, missing values, repeated non-repeatable flags or
  // positional arguments.
  absl::Status Parse(int argc, char** argv);

  bool Has(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  std::string GetString(const std::string& name, const std::string& default_value = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  // Typed values: InvalidArgument naming the flag when the text is not a number.
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t default_value) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double default_value) const;

  std::string Usage(const std::string& program) const;

 private:
  struct Flag {
    std::string help;
    bool is_bool = false;
    bool repeatable = false;
  };
  std::map<std::string, Flag> flags_;
  std::map<std::string, std::vector<std::string>> values_;
};

}  // namespace pdserve::cli
