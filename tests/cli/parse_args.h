#pragma once
// Runs ArgParser::Parse over a list of arguments, as a binary's main would get them after its
// name.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli/arg_parser.h"

namespace pdserve::cli {

inline absl::Status ParseArgs(ArgParser& parser, std::vector<std::string> args) {
  std::vector<char*> argv = {const_cast<char*>("prog")};
  for (std::string& arg : args) argv.push_back(arg.data());
  return parser.Parse(static_cast<int>(argv.size()), argv.data());
}

}  // namespace pdserve::cli
