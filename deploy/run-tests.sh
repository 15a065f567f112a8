#!/usr/bin/env bash
# Builds pdserve and runs every test under ctest (the README's test command; CI runs it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
"$root/deploy/build.sh" "$@"
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -j2
