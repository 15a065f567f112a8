#!/usr/bin/env bash
# Builds pdserve (deploy/build.sh) and runs every test under ctest (the README's test command; CI
# runs it). When the default build has CUDA (nvcc found), the CPU-only configuration
# (-DPDSERVE_CUDA=OFF) is built and tested as well, so a machine without the CUDA toolkit is
# covered every time.
#
# Usage: deploy/run-tests.sh [-DVAR=VALUE | -UVAR ...]
#   -DVAR=VALUE, -UVAR   passed to cmake's configure step (deploy/build.sh)
#   -h, --help           prints this and exits
# Environment: PDSERVE_BUILD_DIR (the build folder; default build/; the CPU-only one is
# <it>-cpu-only).
# Exit status: 0 when everything built and every test passed, 2 for bad usage, else non-zero
# (a build failure or a failed test).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
usage_cmake_args "$@"
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
"$root/deploy/build.sh" "$@"
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -j2

if grep -q '^PDSERVE_CUDA:BOOL=ON' "$build_dir/CMakeCache.txt"; then
  cpu_only_dir=$build_dir-cpu-only
  echo "== the CPU-only configuration (-DPDSERVE_CUDA=OFF) in $cpu_only_dir"
  PDSERVE_BUILD_DIR=$cpu_only_dir "$root/deploy/build.sh" -DPDSERVE_CUDA=OFF "$@"
  # Fuzz targets build apart from either configuration and fault-injection tests need no second
  # run: both ran above.
  ctest --test-dir "$cpu_only_dir" --output-on-failure --timeout 900 -j2 -LE '^(fuzz|fault)$'
fi
