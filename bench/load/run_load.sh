#!/usr/bin/env bash
# Runs bench/load/load_gen.py against a pdserve cluster that is already running, and leaves it
# running. The default load is a small Poisson rate sweep (-n 12 --sweep 0.25,0.5,1, prompts of
# 32-128 words, outputs of 16-48 tokens, SLO TTFT <= 2000 ms and TPOT <= 150 ms) that prints the
# table and the goodput; load_gen.py flags after -- replace it (e.g. -- --concurrency 100
# --duration-s 30 for a closed loop; bench/load/load_gen.py --help lists them).
#
# Usage: bench/load/run_load.sh [--router HOST:PORT | --launch] [--config CONFIG]
#                               [-- LOAD_GEN_FLAGS...]
#   --router HOST:PORT  the router (default: $PDSERVE_ROUTER, else host:router_port of CONFIG)
#   --config CONFIG     the cluster's config (default: $PDSERVE_CLUSTER_CONFIG, else
#                       deploy/clusters/default.conf)
#   --launch            launches CONFIG's cluster first (deploy/launch.sh --detach) and stops it
#                       at the end, also on an error or Ctrl-C; only a cluster this run launched
#                       is ever stopped
#   -h, --help          prints this and exits
# Environment: PDSERVE_ROUTER, PDSERVE_CLUSTER_CONFIG; with --launch, deploy/launch.sh's
# (PDSERVE_BUILD_DIR, PDSERVE_RUN_DIR, ...).
# Exit status: load_gen.py's (0 when the load ran and every request was served, 1 when a request
# failed); 1 when nothing listens at the router's address (launch the cluster first:
# deploy/launch.sh --detach CONFIG, or pass --launch) or the launch failed; 2 for bad usage.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/deploy/lib/usage.sh"
router=${PDSERVE_ROUTER:-}
config=${PDSERVE_CLUSTER_CONFIG:-$root/deploy/clusters/default.conf}
launch=0
load_flags=(-n 12 --sweep "0.25,0.5,1" --prompt-tokens 32:128 --output-tokens 16:48
            --ttft-slo-ms 2000 --tpot-slo-ms 150)
router_flag=""
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --router) router_flag=${2:-}; [ -n "$router_flag" ] || usage_error "--router needs HOST:PORT"
              shift ;;
    --config) config=${2:-}; [ -n "$config" ] || usage_error "--config needs a file"; shift ;;
    --launch) launch=1 ;;
    --) shift; load_flags=("$@"); break ;;
    *) usage_error "unknown argument '$1' (load_gen.py flags go after --)" ;;
  esac
  shift
done
((launch == 0)) || [ -z "$router_flag" ] || usage_error "--launch takes the router from CONFIG, not --router"
[ -z "$router_flag" ] || router=$router_flag
if [ -z "$router" ] || ((launch)); then
  [ -f "$config" ] || usage_error "no config file $config"
  host=$(sed -n 's/^host=//p' "$config" | tail -n1)
  port=$(sed -n 's/^router_port=//p' "$config" | tail -n1)
  [ -n "$port" ] || usage_error "no router_port in $config"
  router=${host:-127.0.0.1}:$port
fi

if ((launch)); then
  # launch.sh stops what it started when it fails (and refuses to start over a running launch),
  # so the trap is set only once this run's launch succeeded.
  "$root/deploy/launch.sh" --detach "$config"
  trap '"$root/deploy/launch.sh" --stop "$config" >/dev/null 2>&1 || true' EXIT
elif ! (exec 3<>"/dev/tcp/${router%:*}/${router##*:}") 2>/dev/null; then
  echo "run_load: nothing listens at $router: launch the cluster first" \
       "(deploy/launch.sh --detach $config), or pass --launch" >&2
  exit 1
fi
python3 "$root/bench/load/load_gen.py" --router "$router" "${load_flags[@]}"
