#!/usr/bin/env bash
# Builds pdserve's libFuzzer targets (tests/fuzz, docs/fuzzing.md) with clang, ASan and UBSan in
# their own build dir, replays a target's committed seeds, then fuzzes it.
#
# Usage: deploy/fuzz.sh TARGET [SECONDS]   build TARGET, replay tests/fuzz/corpus/TARGET, then
#                                          fuzz for SECONDS (default 60)
#        deploy/fuzz.sh --build [TARGET...] build only (every target when none is named)
#        deploy/fuzz.sh --list              the targets
#        deploy/fuzz.sh --help
# Extra libFuzzer flags may follow SECONDS (e.g. -jobs=2, -only_ascii=1).
#
# Exits non-zero on any crash, leak, sanitizer report, broken invariant or timeout; the input is
# left in <build>/artifacts/TARGET/ (docs/fuzzing.md: turning it into a regression test). New
# inputs the fuzzer finds go to <build>/work-corpus/TARGET/ (kept between runs, never
# committed).
#
# Environment: PDSERVE_FUZZ_BUILD_DIR (default <root>/build-fuzz), FUZZ_CXX / FUZZ_CC (clang++ /
# clang), FUZZ_JOBS (build parallelism, default 2). The build configures the whole tree with
# -DPDSERVE_FUZZ=ON but compiles only the fuzzers and the libraries they link.
# Exit status: 0 when the target ran clean, 2 for bad usage, else non-zero (a build failure or
# a finding).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
targets() { for f in "$root"/tests/fuzz/*_fuzz.cc; do basename "$f" _fuzz.cc; done; }

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --list) targets; exit 0 ;;
  "") usage_error "no target named" ;;
esac

build=${PDSERVE_FUZZ_BUILD_DIR:-$root/build-fuzz}
cxx=${FUZZ_CXX:-clang++}
cc=${FUZZ_CC:-clang}

check_target() {
  [ -f "$root/tests/fuzz/$1_fuzz.cc" ] || {
    usage_error "unknown target '$1'; the targets are: $(targets | tr '\n' ' ')"
  }
}

# Builds the fuzzers named (all when none), one build at a time per build dir.
build_fuzzers() {
  command -v "$cxx" >/dev/null || {
    echo "fuzz: $cxx not found (clang 14 is expected)" >&2
    exit 1
  }
  mkdir -p "$build"
  exec 9>"$build/.fuzz-build.lock"
  flock 9
  if [ ! -f "$build/build.ninja" ]; then
    echo "fuzz: configuring $build (clang, -DPDSERVE_FUZZ=ON)" >&2
    cmake -S "$root" -B "$build" -G Ninja -DPDSERVE_FUZZ=ON -DPDSERVE_CUDA=OFF \
      -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" >&2
  fi
  local ninja_targets=()
  if [ $# -eq 0 ]; then ninja_targets=(pdserve_fuzzers); else
    for t in "$@"; do ninja_targets+=("${t}_fuzz"); done
  fi
  local start=$SECONDS
  ninja -C "$build" -j "${FUZZ_JOBS:-2}" "${ninja_targets[@]}" >&2
  echo "fuzz: built ${ninja_targets[*]} in $((SECONDS - start)) s" >&2
  exec 9>&-
}

if [ "$1" = --build ]; then
  shift
  for t in "$@"; do check_target "$t"; done
  build_fuzzers "$@"
  exit 0
fi

target=$1
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
check_target "$target"
# libFuzzer reads -max_total_time=0 as "no limit".
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] ||
  usage_error "SECONDS must be a positive whole number, got '$seconds'"
corpus=$root/tests/fuzz/corpus/$target
[ -d "$corpus" ] || { echo "fuzz: missing seed corpus $corpus" >&2; exit 1; }
build_fuzzers "$target"

# Per-target limits: inputs no longer than a real message needs, and the target's dictionary.
max_len=4096
extra=()
case "$target" in
  gguf) max_len=65536 ;;
  kv_chunks) max_len=16384 ;;
  tokenizer) max_len=2048 ;;
  registry) extra+=(-close_fd_mask=2) ;;  # the handlers log every registration to stderr
esac
dict=$root/tests/fuzz/$target.dict
[ -f "$dict" ] && extra+=(-dict="$dict")
mkdir -p "$build/work-corpus/$target" "$build/artifacts/$target"
fuzzer=$build/tests/fuzz/${target}_fuzz
fuzz_args=(-rss_limit_mb=2048 -timeout=10 -max_len="$max_len" -print_final_stats=1
           -artifact_prefix="$build/artifacts/$target/" "${extra[@]}" "$@")
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

echo "fuzz: $target: replaying $(ls "$corpus" | wc -l) seed inputs" >&2
"$fuzzer" "${fuzz_args[@]}" -runs=0 "$corpus"
echo "fuzz: $target: fuzzing for ${seconds}s" >&2
"$fuzzer" "${fuzz_args[@]}" -max_total_time="$seconds" "$build/work-corpus/$target" "$corpus"
echo "fuzz: $target: no crashes in ${seconds}s" >&2
