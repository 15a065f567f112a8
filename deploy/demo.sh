#!/usr/bin/env bash
# The main job: sends a prompt through the default cluster (SmolLM2-135M-Instruct, fetched once; a
# router, one prefill worker and one decode worker, each its own process) with pdserve-client and
# prints the answer with its TTFT and TPOT. When the cluster's router already answers, it is used
# and left running; otherwise the cluster is launched, and stopped again afterwards (also on an
# error or Ctrl-C), leaving nothing running. It never stops a cluster it did not launch.
#
# Usage: deploy/demo.sh ["your prompt"]     (-h, --help prints this)
# Environment: PDSERVE_BUILD_DIR (default build/), PDSERVE_CLUSTER_CONFIG (default
# deploy/clusters/default.conf), and deploy/launch.sh's (PDSERVE_RUN_DIR, ...).
# Exit status: 0 when the answer printed, 2 for bad usage, else non-zero (launch.sh's or
# pdserve-client's: the cluster did not start, or the request failed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
usage_only_help "$@"
[ $# -le 1 ] || usage_error "takes one prompt (quote it), got $# arguments"
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
export PDSERVE_BUILD_DIR=$build_dir
config=${PDSERVE_CLUSTER_CONFIG:-$root/deploy/clusters/default.conf}
prompt=${1:-"What is the capital of France? Answer in one sentence."}
client=$build_dir/cli/pdserve-client
[ -x "$client" ] || { echo "demo: $client is missing: run deploy/build.sh first" >&2; exit 1; }
value() { sed -n "s/^$1=//p" "$config" | tail -n1; }
host=$(value host)
router=${host:-127.0.0.1}:$(value router_port)

if "$client" --router "$router" --list-workers --timeout-ms 2000 >/dev/null 2>&1; then
  echo "demo: using the cluster already running at $router (left running)"
else
  "$root/deploy/fetch-model.sh" >/dev/null
  # launch.sh stops what it started when it fails, so the trap is set only once it succeeded.
  "$root/deploy/launch.sh" --detach "$config"
  trap '"$root/deploy/launch.sh" --stop "$config" >/dev/null' EXIT
fi
echo
"$client" --router "$router" --chat --prompt "$prompt" --max-tokens 128
echo
