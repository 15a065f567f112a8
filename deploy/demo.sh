#!/usr/bin/env bash
# The main job: launches the default cluster (SmolLM2-135M-Instruct, fetched once; a router, one
# prefill worker and one decode worker, each its own process), sends the prompt through the
# router with pdserve-client, prints the answer with its TTFT and TPOT, and stops the cluster
# again (also on an error or Ctrl-C), leaving nothing running.
#   deploy/demo.sh ["your prompt"]
# Environment: PDSERVE_BUILD_DIR (default build/), PDSERVE_CLUSTER_CONFIG (default
# deploy/clusters/default.conf).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
export PDSERVE_BUILD_DIR=$build_dir
config=${PDSERVE_CLUSTER_CONFIG:-$root/deploy/clusters/default.conf}
prompt=${1:-"What is the capital of France? Answer in one sentence."}

value() { sed -n "s/^$1=//p" "$config" | tail -n1; }
host=$(value host)
router=${host:-127.0.0.1}:$(value router_port)

"$root/deploy/fetch-model.sh" >/dev/null
trap '"$root/deploy/launch.sh" --stop "$config" >/dev/null' EXIT
"$root/deploy/launch.sh" --detach "$config"
echo
"$build_dir/cli/pdserve-client" --router "$router" --chat --prompt "$prompt" --max-tokens 128
echo
