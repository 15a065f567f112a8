#!/usr/bin/env bash
# Configures and builds pdserve (Release, Ninja) into build/ or $PDSERVE_BUILD_DIR.
#
# Usage: deploy/build.sh [-DVAR=VALUE | -UVAR ...]
#   -DVAR=VALUE, -UVAR   passed to cmake's configure step, e.g. -DPDSERVE_CUDA=OFF
#   -h, --help           prints this and exits
# Environment: PDSERVE_BUILD_DIR (the build folder; default build/).
# Exit status: 0 when built, 2 for bad usage, else cmake's (a configure or compile failure).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
usage_cmake_args "$@"
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir"
