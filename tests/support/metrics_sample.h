#pragma once
// Reading a /metrics text (Prometheus text format 0.0.4) in C++ tests. Series are compared as a
// name and a set of labels, so the order in which the serializer writes labels (prometheus-cpp:
// by name, `le` last) does not matter.

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace pdserve::test_support {

// A series: its name and its labels (name -> unescaped value).
using Series = std::pair<std::string, std::map<std::string, std::string>>;

// `text` = `name` or `name{k="v",...}` (values escaped as the format escapes them), from
// `*pos`; leaves *pos past the series. An unparsable series has an empty name.
inline Series ParseSeries(const std::string& text, size_t* pos) {
  Series series;
  size_t i = *pos;
  while (i < text.size() && text[i] != '{' && text[i] != ' ') series.first += text[i++];
  if (i < text.size() && text[i] == '{') {
    ++i;
    while (i < text.size() && text[i] != '}') {
      const size_t eq = text.find("=\"", i);
      if (eq == std::string::npos) return {};
      std::string name = text.substr(i, eq - i);
      std::string value;
      for (i = eq + 2; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) {
          ++i;
          value += text[i] == 'n' ? '\n' : text[i];
        } else {
          value += text[i];
        }
      }
      if (i >= text.size()) return {};
      series.second[std::move(name)] = std::move(value);
      ++i;  // the closing quote
      if (i < text.size() && text[i] == ',') ++i;
    }
    if (i >= text.size()) return {};
    ++i;  // '}'
  }
  *pos = i;
  return series;
}

// The value of `series` (a name and labels as ParseSeries reads them, e.g.
// `pdserve_requests_total{outcome="failed",finish_reason="none"}`, labels in any order) in
// `text`; NaN when there is no such sample.
inline double MetricSample(const std::string& text, const std::string& series) {
  size_t wanted_end = 0;
  const Series wanted = ParseSeries(series, &wanted_end);
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    size_t end = 0;
    if (ParseSeries(line, &end) == wanted && end < line.size() && line[end] == ' ') {
      return std::stod(line.substr(end + 1));
    }
  }
  return std::nan("");
}

// Each family's type from its `# TYPE name type` line: name -> "counter", "gauge", ...
inline std::map<std::string, std::string> MetricTypes(const std::string& text) {
  std::map<std::string, std::string> types;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string hash, keyword, name, type;
    if (words >> hash >> keyword >> name >> type && hash == "#" && keyword == "TYPE") {
      types[name] = type;
    }
  }
  return types;
}

// The `le` labels of histogram `name`'s unlabelled buckets, in the order the text has them.
inline std::vector<std::string> BucketBounds(const std::string& text, const std::string& name) {
  std::vector<std::string> bounds;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    size_t end = 0;
    const Series series = ParseSeries(line, &end);
    if (series.first == name + "_bucket" && series.second.size() == 1 &&
        series.second.count("le") != 0) {
      bounds.push_back(series.second.at("le"));
    }
  }
  return bounds;
}

}  // namespace pdserve::test_support
