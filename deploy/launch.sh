#!/usr/bin/env bash
# Starts a pdserve cluster (router + prefill workers + decode workers, one process each) from a
# config file (deploy/clusters/README.md), waits until the router lists every worker as healthy,
# and prints where the router listens.
#
#   deploy/launch.sh CONFIG             stays in the foreground; Ctrl-C stops everything
#   deploy/launch.sh --detach CONFIG    returns once healthy (pids in the run dir)
#   deploy/launch.sh --stop [CONFIG]    stops a detached cluster (SIGTERM, then SIGKILL)
#
# Environment: PDSERVE_BUILD_DIR (binaries; default build/), PDSERVE_RUN_DIR (logs and pids;
# default $PDSERVE_BUILD_DIR/run/<config name>), PDSERVE_SHARED_DIR (default ../shared),
# PDSERVE_STOP_GRACE_S (seconds between SIGTERM and SIGKILL on a stop; default 10).
# Exit status: 0 when healthy (or stopped), 1 when the cluster failed to start (what started is
# stopped and the failing process's log tail printed), 2 for bad usage or a bad config.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
shared_dir=${PDSERVE_SHARED_DIR:-$root/../shared}
stop_grace_s=${PDSERVE_STOP_GRACE_S:-10}

source "$root/deploy/lib/usage.sh"
die() { echo "launch: $*" >&2; exit 2; }

mode=foreground
case "${1:-}" in
  --detach) mode=detach; shift ;;
  --stop) mode=stop; shift ;;
esac
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  -*) usage_error "unknown option '$1'" ;;
esac
config=${1:-}
[ $# -le 1 ] || usage_error "takes one CONFIG, got: $*"
if [ -z "$config" ]; then
  [ "$mode" = stop ] || usage_error "CONFIG is required"
  config=$root/deploy/clusters/default.conf
fi
[ -f "$config" ] || die "no config file $config"
name=$(basename "$config" .conf)
run_dir=${PDSERVE_RUN_DIR:-$build_dir/run/$name}
pid_file=$run_dir/pids

# ---- processes we started: "name pid" lines in $pid_file ---------------------------------------

# True when pid runs (not a zombie) and is still the process we started, not a reused pid: our
# own child (this launch.sh started it; it may not have exec'd its binary yet), or a process
# whose command line names pdserve (started by an earlier launch.sh, e.g. for --stop).
is_ours() {
  local pid=$1 stat cmd
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*") "}  # the fields after "(comm) ": state ppid ...
  local -a fields
  read -r -a fields <<<"$stat"
  [ "${fields[0]:-Z}" != Z ] || return 1
  [ "${fields[1]:-}" != "$$" ] || return 0
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *pdserve* ]]
}

# Sends SIGTERM to every process (each is its own process group, started with setsid), waits up
# to stop_grace_s, then SIGKILLs what is left. Removes the pid file.
stop_all() {
  [ -f "$pid_file" ] || return 0
  local names=() pids=() n p
  while read -r n p; do names+=("$n"); pids+=("$p"); done <"$pid_file"
  # In reverse start order: workers before the router.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    if is_ours "${pids[i]}"; then
      kill -TERM -- "-${pids[i]}" 2>/dev/null || kill -TERM "${pids[i]}" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + stop_grace_s)) alive
  while :; do
    alive=0
    for p in "${pids[@]}"; do is_ours "$p" && alive=1; done
    ((alive)) || break
    if ((SECONDS >= deadline)); then
      for ((i = 0; i < ${#pids[@]}; i++)); do
        if is_ours "${pids[i]}"; then
          echo "launch: ${names[i]} (pid ${pids[i]}) ignored SIGTERM for ${stop_grace_s}s: SIGKILL" >&2
          kill -KILL -- "-${pids[i]}" 2>/dev/null || kill -KILL "${pids[i]}" 2>/dev/null || true
        fi
      done
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  # Reap our own children (no zombies left) when they are ours.
  wait 2>/dev/null || true
  rm -f "$pid_file"
}

if [ "$mode" = stop ]; then
  if [ ! -f "$pid_file" ]; then
    echo "launch: nothing to stop ($pid_file does not exist)" >&2
    exit 0
  fi
  stop_all
  echo "launch: stopped the cluster of $config" >&2
  exit 0
fi

# ---- the config ----------------------------------------------------------------------------------

declare -A cfg=(
  [host]=127.0.0.1 [prefill_workers]=1 [decode_workers]=1 [threads]=1 [health_timeout_s]=120
)
known_keys="model tokenizer host router_port prefill_workers decode_workers prefill_base_port"
known_keys+=" decode_base_port threads prefill_cpus decode_cpus router_cpus kv_pool_tokens"
known_keys+=" max_batch router_flags prefill_flags decode_flags health_timeout_s device dtype"
known_keys+=" kv_transport tls_cert tls_key tls_ca cluster_secret_file api_keys_file http_port"
known_keys+=" prefill_metrics_base_port decode_metrics_base_port"
line_no=0
while IFS= read -r line || [ -n "$line" ]; do
  line_no=$((line_no + 1))
  line=${line%$'\r'}
  [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
  [[ "$line" == *=* ]] || die "$config:$line_no: expected key=value, got '$line'"
  key=${line%%=*}
  value=${line#*=}
  [[ " $known_keys " == *" $key "* ]] || die "$config:$line_no: unknown key '$key'"
  value=${value//'${ROOT}'/$root}
  value=${value//'${SHARED}'/$shared_dir}
  cfg[$key]=$value
done <"$config"

for key in model router_port; do
  [ -n "${cfg[$key]:-}" ] || die "$config: '$key' is required"
done
for key in router_port prefill_workers decode_workers prefill_base_port decode_base_port threads \
           health_timeout_s kv_pool_tokens max_batch prefill_metrics_base_port \
           decode_metrics_base_port; do
  v=${cfg[$key]:-}
  [ -z "$v" ] || [[ "$v" =~ ^[0-9]+$ ]] || die "$config: '$key' must be a number, got '$v'"
done
n_prefill=${cfg[prefill_workers]}
n_decode=${cfg[decode_workers]}
((n_prefill >= 1 && n_decode >= 1)) || die "$config: need at least one prefill and one decode worker"
((n_prefill == 0)) || [ -n "${cfg[prefill_base_port]:-}" ] || die "$config: 'prefill_base_port' is required"
((n_decode == 0)) || [ -n "${cfg[decode_base_port]:-}" ] || die "$config: 'decode_base_port' is required"

model=${cfg[model]}
if [ "$model" = "@fetch-model" ]; then
  model=$("$root/deploy/fetch-model.sh") || { echo "launch: deploy/fetch-model.sh failed" >&2; exit 1; }
fi
[ -f "$model" ] || die "model file $model does not exist"
host=${cfg[host]}
router_addr=$host:${cfg[router_port]}

router_bin=$build_dir/router/pdserve-router
prefill_bin=$build_dir/prefill_node/pdserve-prefill-worker
decode_bin=$build_dir/decode_node/pdserve-decode-worker
client_bin=$build_dir/cli/pdserve-client
for b in "$router_bin" "$prefill_bin" "$decode_bin" "$client_bin"; do
  [ -x "$b" ] || { echo "launch: $b is missing: build it first (PDSERVE_BUILD_DIR=$build_dir)" >&2; exit 1; }
done

mkdir -p "$run_dir"
if [ -f "$pid_file" ]; then
  while read -r n p; do
    if is_ours "$p"; then
      echo "launch: $n (pid $p) of a previous launch is still running: run $0 --stop $config" >&2
      exit 1
    fi
  done <"$pid_file"
  rm -f "$pid_file"
fi

# The i-th word of a space-separated list, or empty.
nth_word() { local -a w; read -r -a w <<<"$1"; echo "${w[$2]:-}"; }

# start NAME CPUS BINARY ARGS...: runs it in its own session, output to NAME.log.
start() {
  local pname=$1 cpus=$2; shift 2
  local log=$run_dir/$pname.log
  local -a cmd=(setsid)
  [ -z "$cpus" ] || cmd+=(taskset -c "$cpus")
  cmd+=("$@")
  echo "$(date -u +%FT%TZ) ${cmd[*]}" >"$log"
  "${cmd[@]}" >>"$log" 2>&1 </dev/null &
  echo "$pname $!" >>"$pid_file"
}

tokenizer_args=()
[ -z "${cfg[tokenizer]:-}" ] || tokenizer_args=(--tokenizer "${cfg[tokenizer]}")
# Where both kinds of worker run the model (the binaries check the values).
device_args=()
[ -z "${cfg[device]:-}" ] || device_args+=(--device "${cfg[device]}")
[ -z "${cfg[dtype]:-}" ] || device_args+=(--dtype "${cfg[dtype]}")
# How KV moves from prefill to decode: both sides take the same mode (the workers check it).
[ -z "${cfg[kv_transport]:-}" ] || device_args+=(--kv-transport "${cfg[kv_transport]}")
# Security (docs/security.md): every process gets the same TLS files and cluster secret; the
# binaries check the files. The health check below talks to the router as a public client: it
# trusts the CA and sends the first API key, in its environment alone (not on a command line).
security_args=()
[ -z "${cfg[tls_cert]:-}" ] || security_args+=(--tls-cert "${cfg[tls_cert]}")
[ -z "${cfg[tls_key]:-}" ] || security_args+=(--tls-key "${cfg[tls_key]}")
[ -z "${cfg[tls_ca]:-}" ] || security_args+=(--tls-ca "${cfg[tls_ca]}")
[ -z "${cfg[cluster_secret_file]:-}" ] ||
  security_args+=(--cluster-secret-file "${cfg[cluster_secret_file]}")
router_security_args=()
client_args=()
[ -z "${cfg[tls_ca]:-}" ] || client_args+=(--tls-ca "${cfg[tls_ca]}")
health_api_key=
if [ -n "${cfg[api_keys_file]:-}" ]; then
  [ -r "${cfg[api_keys_file]}" ] || die "api_keys_file ${cfg[api_keys_file]} cannot be read"
  router_security_args+=(--api-keys-file "${cfg[api_keys_file]}")
  health_api_key=$(awk '!/^[[:space:]]*(#|$)/ { print $1; exit }' "${cfg[api_keys_file]}")
fi
read -r -a router_extra <<<"${cfg[router_flags]:-}"
http_args=()
http_note=
if [ -n "${cfg[http_port]:-}" ]; then
  [[ "${cfg[http_port]}" =~ ^[0-9]+$ ]] || die "$config: 'http_port' must be a port number"
  http_args=(--http-listen "$host:${cfg[http_port]}")
  http_scheme=http; [ -z "${cfg[tls_cert]:-}" ] || http_scheme=https
  http_note=", OpenAI HTTP API at $http_scheme://$host:${cfg[http_port]}/v1"
fi
read -r -a prefill_extra <<<"${cfg[prefill_flags]:-}"
read -r -a decode_extra <<<"${cfg[decode_flags]:-}"

# metrics_args BASE I: sets metrics_flag to worker I's --metrics-port (BASE + I), or to nothing
# without a base port (the role's *_metrics_base_port).
metrics_args() {
  metrics_flag=()
  [ -z "$1" ] || metrics_flag=(--metrics-port "$(($1 + $2))")
}

: >"$pid_file"
start router "${cfg[router_cpus]:-}" "$router_bin" --listen "$router_addr" --model "$model" \
  "${tokenizer_args[@]}" "${security_args[@]}" "${router_security_args[@]}" "${http_args[@]}" \
  "${router_extra[@]}"
for ((i = 0; i < n_prefill; i++)); do
  metrics_args "${cfg[prefill_metrics_base_port]:-}" "$i"
  start "prefill-$i" "$(nth_word "${cfg[prefill_cpus]:-}" "$i")" "$prefill_bin" \
    --listen "$host:$((cfg[prefill_base_port] + i))" --router "$router_addr" \
    --worker-id "prefill-$i" --model "$model" "${tokenizer_args[@]}" \
    --threads "${cfg[threads]}" "${device_args[@]}" "${security_args[@]}" \
    "${metrics_flag[@]}" "${prefill_extra[@]}"
done
decode_args=()
[ -z "${cfg[kv_pool_tokens]:-}" ] || decode_args+=(--kv-pool-tokens "${cfg[kv_pool_tokens]}")
[ -z "${cfg[max_batch]:-}" ] || decode_args+=(--max-batch "${cfg[max_batch]}")
for ((i = 0; i < n_decode; i++)); do
  metrics_args "${cfg[decode_metrics_base_port]:-}" "$i"
  start "decode-$i" "$(nth_word "${cfg[decode_cpus]:-}" "$i")" "$decode_bin" \
    --listen "$host:$((cfg[decode_base_port] + i))" --router "$router_addr" \
    --worker-id "decode-$i" --model "$model" "${tokenizer_args[@]}" \
    --threads "${cfg[threads]}" "${device_args[@]}" "${decode_args[@]}" "${security_args[@]}" \
    "${metrics_flag[@]}" "${decode_extra[@]}"
done

# Fails the launch: stops everything, prints the log tail of the process that failed.
fail() {
  local failed=$1 why=$2
  echo "launch: $why" >&2
  stop_all
  if [ -n "$failed" ]; then
    echo "---- last lines of $run_dir/$failed.log ----" >&2
    tail -n 30 "$run_dir/$failed.log" >&2 || true
  else
    for f in "$run_dir"/*.log; do
      echo "---- last lines of $f ----" >&2
      tail -n 8 "$f" >&2 || true
    done
  fi
  exit 1
}

# The name of the first process of ours that has exited, or nothing.
first_dead() {
  local n p
  while read -r n p; do is_ours "$p" || { echo "$n"; return; }; done <"$pid_file"
}

trap 'fail "" "interrupted while starting"' INT TERM
deadline=$((SECONDS + cfg[health_timeout_s]))
want=$((n_prefill + n_decode))
while :; do
  dead=$(first_dead)
  [ -z "$dead" ] || fail "$dead" "$dead exited while the cluster was starting"
  healthy=$(PDSERVE_API_KEY=$health_api_key timeout 5 "$client_bin" --router "$router_addr" \
    "${client_args[@]}" --list-workers --timeout-ms 2000 2>/dev/null |
    awk '$4 == "healthy" { n++ } END { print n + 0 }') || healthy=0
  ((healthy >= want)) && break
  if ((SECONDS >= deadline)); then
    fail "" "only $healthy of $want workers became healthy within ${cfg[health_timeout_s]}s"
  fi
  sleep 0.3
done

# Foreground: from now on Ctrl-C (or SIGTERM) stops everything and exits 0; set before the
# "is up" line so that a signal sent as soon as it is read is handled by this trap.
if [ "$mode" = foreground ]; then
  trap 'echo "launch: stopping" >&2; stop_all; exit 0' INT TERM
else
  trap - INT TERM
fi
echo "pdserve cluster '$name' is up: router at $router_addr$http_note ($n_prefill prefill + $n_decode decode workers; logs in $run_dir)"
if [ "$mode" = detach ]; then
  exit 0
fi

# Stay until a signal (or until a process dies, which stops the rest).
while :; do
  dead=$(first_dead)
  [ -z "$dead" ] || fail "$dead" "$dead exited; stopping the cluster"
  sleep 1 &
  wait $! || true
done
