#!/usr/bin/env bash
# Builds pdserve and runs every test under ctest (the README's test command; CI runs it).
# When the default build has CUDA (nvcc found), the CPU-only configuration (-DPDSERVE_CUDA=OFF) is
# built and tested as well, so a machine without the CUDA toolkit is covered every time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
"$root/deploy/build.sh" "$@"
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -j2

if grep -q '^PDSERVE_CUDA:BOOL=ON' "$build_dir/CMakeCache.txt"; then
  cpu_only_dir=$build_dir-cpu-only
  echo "== the CPU-only configuration (-DPDSERVE_CUDA=OFF) in $cpu_only_dir"
  PDSERVE_BUILD_DIR=$cpu_only_dir "$root/deploy/build.sh" -DPDSERVE_CUDA=OFF "$@"
  # The fuzz target builds apart from either configuration: it ran above.
  ctest --test-dir "$cpu_only_dir" --output-on-failure --timeout 900 -j2 -E '^gguf_fuzz$'
fi
