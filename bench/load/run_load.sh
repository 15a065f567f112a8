#!/usr/bin/env bash
# Launches the default cluster (SmolLM2, 1 prefill + 1 decode), runs a small rate sweep with
# load_gen.py, prints the table and the goodput, and stops the cluster (also on error or Ctrl-C).
#   bench/load/run_load.sh [extra load_gen.py flags]
# Environment: PDSERVE_CLUSTER_CONFIG (default deploy/clusters/default.conf), PDSERVE_BUILD_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
config=${PDSERVE_CLUSTER_CONFIG:-$root/deploy/clusters/default.conf}
router=$(sed -n 's/^host=//p' "$config" | tail -n1):$(sed -n 's/^router_port=//p' "$config" | tail -n1)
[ "$router" != ":" ] || { echo "run_load: cannot read host/router_port from $config" >&2; exit 2; }
[[ "$router" != :* ]] || router=127.0.0.1$router

trap '"$root/deploy/launch.sh" --stop "$config" >/dev/null 2>&1 || true' EXIT
"$root/deploy/launch.sh" --detach "$config"
python3 "$root/bench/load/load_gen.py" --router "$router" -n 12 --sweep 0.25,0.5,1 \
  --prompt-tokens 32:128 --output-tokens 16:48 --ttft-slo-ms 2000 --tpot-slo-ms 150 "$@"
