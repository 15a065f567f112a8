#!/usr/bin/env bash
# Configures and builds pdserve into build/ (Release, Ninja). Extra arguments go to cmake's
# configure step, e.g. -DPDSERVE_CUDA=OFF.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir"
