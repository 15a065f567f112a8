#!/usr/bin/env bash
# The main job: fetches SmolLM2-135M-Instruct once and answers a prompt with it.
#   deploy/demo.sh ["your prompt"]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
prompt=${1:-"What is the capital of France? Answer in one sentence."}
model=$("$root/deploy/fetch-model.sh")
"$build_dir/cli/pdserve-generate" --model "$model" --chat --prompt "$prompt" \
  --max-tokens 128 --threads "$(nproc)"
echo
