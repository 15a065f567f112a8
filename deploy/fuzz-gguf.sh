#!/usr/bin/env bash
# The GGUF reader's fuzz target, kept for old habits: the same as deploy/fuzz.sh gguf [SECONDS].
# Usage: deploy/fuzz-gguf.sh [SECONDS]   (default 60; deploy/fuzz.sh --help says the rest)
# Exit status: as deploy/fuzz.sh's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
usage_only_help "$@"
exec "$root/deploy/fuzz.sh" gguf "$@"
