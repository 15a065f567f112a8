#!/usr/bin/env bash
# Builds the GGUF reader's libFuzzer target with clang++ (ASan + UBSan) in its own build dir
# (build-fuzz, or $PDSERVE_FUZZ_BUILD_DIR), replays the committed seed corpus, then fuzzes for
# SECONDS (default 60). Exits non-zero on any crash, leak, sanitizer report or timeout; the
# crashing input is left in <build>/artifacts/. Only the reader and kernels/tensor_type.cc are
# compiled, not the project.
# Usage: deploy/fuzz-gguf.sh [SECONDS]
set -euo pipefail

seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PDSERVE_FUZZ_BUILD_DIR:-$root/build-fuzz}
cxx=${FUZZ_CXX:-clang++}
corpus=$root/tests/fuzz/corpus/gguf

command -v "$cxx" >/dev/null || { echo "fuzz-gguf: $cxx not found (clang 14 is expected)" >&2; exit 1; }
[ -d "$corpus" ] || { echo "fuzz-gguf: missing seed corpus $corpus" >&2; exit 1; }
mkdir -p "$build/obj" "$build/work-corpus" "$build/artifacts"

flags=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I"$root")
sources=(common/gguf/gguf_file.cc common/gguf/mapped_file.cc kernels/tensor_type.cc
         tests/fuzz/gguf_fuzz.cc)
objects=()
for src in "${sources[@]}"; do
  obj=$build/obj/$(echo "$src" | tr / _).o
  objects+=("$obj")
  # -MMD dependency files let an unchanged source (and its headers) skip recompilation.
  if [ -f "$obj" ] && [ -f "$obj.d" ] && \
     ! find $(sed -e 's/^[^:]*://' -e 's/\\$//' "$obj.d") -newer "$obj" 2>/dev/null | grep -q .; then
    continue
  fi
  echo "fuzz-gguf: compiling $src" >&2
  "$cxx" "${flags[@]}" -MMD -MF "$obj.d" -c "$root/$src" -o "$obj"
done
# shellcheck disable=SC2046
"$cxx" "${flags[@]}" "${objects[@]}" -o "$build/gguf_fuzz" \
  $(pkg-config --libs absl_status absl_statusor absl_strings)

fuzz_args=(-rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1
           -dict="$root/tests/fuzz/gguf.dict" -artifact_prefix="$build/artifacts/")

echo "fuzz-gguf: replaying $(ls "$corpus" | wc -l) seed inputs" >&2
"$build/gguf_fuzz" "${fuzz_args[@]}" -runs=0 "$corpus"

echo "fuzz-gguf: fuzzing for ${seconds}s" >&2
# New inputs go to the work corpus (kept between runs, never committed); the seeds are read-only.
"$build/gguf_fuzz" "${fuzz_args[@]}" -max_total_time="$seconds" "$build/work-corpus" "$corpus"
echo "fuzz-gguf: no crashes in ${seconds}s" >&2
