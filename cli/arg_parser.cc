#include "cli/arg_parser.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pdserve::cli {

void ArgParser::AddString(const std::string& name, const std::string& help, bool repeatable) {
  flags_[name] = Flag{help, false, repeatable};
}

void ArgParser::AddBool(const std::string& name, const std::string& help) {
  flags_[name] = Flag{help, true, false};
}

absl::Status ArgParser::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    const Flag& flag = it->second;
    if (flag.is_bool) {
      if (has_inline_value && value != "true" && value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " takes no value (or =true / =false), got '", value, "'"));
      }
      if (!has_inline_value) value = "true";
    } else if (!has_inline_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    std::vector<std::string>& values = values_[name];
    if (!values.empty() && !flag.repeatable) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given more than once"));
    }
    values.push_back(value);
  }
  return absl::OkStatus();
}

bool ArgParser::Has(const std::string& name) const { return values_.count(name) > 0; }

bool ArgParser::GetBool(const std::string& name) const {
  auto it = values_.find(name);
  return it != values_.end() && it->second.back() == "true";
}

std::string ArgParser::GetString(const std::string& name, const std::string& default_value) const {
  auto it = values_.find(name);
  return it == values_.end() ? default_value : it->second.back();
}

std::vector<std::string> ArgParser::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

absl::StatusOr<int64_t> ArgParser::GetInt(const std::string& name, int64_t default_value) const {
  if (!Has(name)) return default_value;
  int64_t value = 0;
  const std::string text = GetString(name);
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must be an integer, got '", text, "'"));
  }
  return value;
}

absl::StatusOr<double> ArgParser::GetDouble(const std::string& name, double default_value) const {
  if (!Has(name)) return default_value;
  double value = 0;
  const std::string text = GetString(name);
  if (!absl::SimpleAtod(text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must be a number, got '", text, "'"));
  }
  return value;
}

std::string ArgParser::Usage(const std::string& program) const {
  std::string usage = absl::StrCat("usage: ", program, " [flags]\n");
  for (const auto& [name, flag] : flags_) {
    absl::StrAppend(&usage, "  --", name, flag.is_bool ? "" : " VALUE", "\n      ", flag.help,
                    flag.repeatable ? " (repeatable)" : "", "\n");
  }
  return usage;
}

}  // namespace pdserve::cli
