// Every fuzz target on its committed inputs, under the normal build: the seed corpus
// (corpus/<target>/) and the crashers of bugs found and fixed (regressions/<target>/,
// docs/fuzzing.md). A crasher that crashes again fails here without clang; each input must also
// leave the target's invariants standing (a broken one aborts the test).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_targets.h"

namespace pdserve::fuzz {
namespace {

namespace fs = std::filesystem;

std::string Root() {
  const char* env = std::getenv("PDSERVE_ROOT");
  return env != nullptr ? env : PDSERVE_ROOT;
}

std::vector<fs::path> Inputs(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class FuzzReplayTest : public ::testing::TestWithParam<FuzzTarget> {};

TEST_P(FuzzReplayTest, CommittedInputsRunClean) {
  const FuzzTarget& target = GetParam();
  const fs::path dir = fs::path(Root()) / "tests" / "fuzz";
  const std::vector<fs::path> seeds = Inputs(dir / "corpus" / target.name);
  ASSERT_FALSE(seeds.empty()) << "no seed corpus in " << (dir / "corpus" / target.name);
  if (!target.init()) GTEST_SKIP() << target.name << ": what the target needs is missing";
  std::vector<fs::path> inputs = seeds;
  for (const fs::path& p : Inputs(dir / "regressions" / target.name)) inputs.push_back(p);
  for (const fs::path& path : inputs) {
    SCOPED_TRACE(path.string());
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << "cannot read " << path;
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    EXPECT_EQ(target.one_input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplayTest, ::testing::ValuesIn(kFuzzTargets),
                         [](const ::testing::TestParamInfo<FuzzTarget>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace pdserve::fuzz
