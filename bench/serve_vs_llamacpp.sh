#!/bin/bash
# serve_vs_llamacpp.sh: a serving benchmark of pdserve's OpenAI HTTP front against llama.cpp's
# llama-server: the same GGUF, the same two CPUs, the same load. One client for both,
# bench/load/load_gen.py --openai (streamed POST /v1/completions, greedy, ignore_eos, Poisson
# arrivals, the same prompts in the same order), sweeps the rates against one system, which is
# then stopped, then against the other; then ONE table (bench/serve_compare_table.py): per rate
# and system, TTFT and ITL p50/p99, output tokens/s, SLO attainment and goodput. Not in CI: about
# 15 minutes with the defaults (plus, the first time, building llama-server).
#
# pdserve: deploy/launch.sh on a config written to a temp dir: 1 prefill worker pinned to the
# first CPU and 1 decode worker pinned to the second (threads=1 each), the router and its HTTP
# front (http_port) on both; max_batch=SLOTS.
# llama.cpp: llama-server -t T -tb T -np SLOTS -c SLOTS*PER_SLOT --cont-batching under taskset on
# both CPUs, built once (cmake, Release, native CPU, no CURL/OpenSSL, only its llama-server
# target) from the llama.cpp tree of the llama-cpp-python 0.3.36 sdist (pip download), in $CACHE;
# nothing of it is written into this checkout. PER_SLOT = 2 * prompt + output + 64 tokens, which
# is also pdserve's kv_pool_tokens per slot. The client runs unpinned (on a 2-CPU machine it
# shares them with either system alike).
#
# Usage: bench/serve_vs_llamacpp.sh [--systems pdserve,llamacpp] [--rates 0.5,1,2,4]
#          [--duration-s 40] [--prompt-tokens 128] [--output-tokens 64] [--slots 16]
#          [--ttft-slo-ms 2000] [--itl-slo-ms 100] [--timeout-s 60] [--llama-threads 2]
#          [--model GGUF] [--out DIR]
#   --systems        which to run, in this order (default pdserve,llamacpp)
#   --rates          requests/s of the sweep (default 0.5,1,2,4: SmolLM2 with these lengths
#                    saturates either system at about 2 req/s on two CPUs)
#   --duration-s     seconds of arrivals per rate (default 40); requests still running then are
#                    read to their end, each within --timeout-s of its send (default 60), or
#                    counted as not served
#   --prompt-tokens  prompt length in words, ~1 token each, distinct prompts (default 128)
#   --output-tokens  tokens generated per request (default 64)
#   --slots          llama-server's -np and pdserve's max_batch (default 16)
#   --llama-threads  T, llama-server's -t and -tb (default 2: one per CPU)
#   --ttft-slo-ms, --itl-slo-ms  the SLO: TTFT <= this and mean ITL (TPOT) <= that (defaults
#                    2000 and 100: about 4x a 128-token prefill and 5x a decode step of either
#                    system unloaded on one of these CPUs)
#   --model          the GGUF (default SmolLM2-135M-Instruct Q4_1: deploy/fetch-model.sh with
#                    PDSERVE_MODELS_DIR, default $CACHE/models)
#   --out            where the results go (default bench/out/serve_vs_llamacpp): per system
#                    <system>.json (load_gen --results), <system>.log (the client's table and
#                    the server's log), and results.json (all of it; serve_compare_table.py)
#   -h, --help       prints this
# Environment: PDSERVE_BUILD_DIR (pdserve's binaries; default build/), PDSERVE_BENCH_CACHE
# ($CACHE: the sdist, llama.cpp's build, the model; default ~/.cache/pdserve-bench),
# PDSERVE_BENCH_CPUS (the two CPUs, default 0,1), PDSERVE_MODELS_DIR.
# Exit status: 0 when the table printed, 1 when a build, a launch or a sweep failed (what this
# script started is stopped), 2 for bad usage.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
systems=pdserve,llamacpp rates=0.5,1,2,4 duration_s=40 prompt_tokens=128 output_tokens=64
slots=16 ttft_slo_ms=2000 itl_slo_ms=100 timeout_s=60 llama_threads=2 model=""
out=$root/bench/out/serve_vs_llamacpp
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --systems|--rates|--duration-s|--prompt-tokens|--output-tokens|--slots|--ttft-slo-ms|\
    --itl-slo-ms|--timeout-s|--llama-threads|--model|--out)
      [ -n "${2:-}" ] || usage_error "$1 needs a value"
      case $1 in
        --systems) systems=$2 ;; --rates) rates=$2 ;; --duration-s) duration_s=$2 ;;
        --prompt-tokens) prompt_tokens=$2 ;; --output-tokens) output_tokens=$2 ;;
        --slots) slots=$2 ;; --ttft-slo-ms) ttft_slo_ms=$2 ;; --itl-slo-ms) itl_slo_ms=$2 ;;
        --timeout-s) timeout_s=$2 ;; --llama-threads) llama_threads=$2 ;; --model) model=$2 ;;
        --out) out=$2 ;;
      esac
      shift 2 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
for n in "$prompt_tokens" "$output_tokens" "$slots" "$llama_threads"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || usage_error "--prompt-tokens, --output-tokens, --slots and --llama-threads take positive integers"
done
for x in ${rates//,/ } "$duration_s" "$ttft_slo_ms" "$itl_slo_ms" "$timeout_s"; do
  [[ $x =~ ^[0-9]*\.?[0-9]+$ && ! $x =~ ^[0.]+$ ]] \
    || usage_error "--rates, --duration-s, --ttft-slo-ms, --itl-slo-ms and --timeout-s take positive numbers, got '$x'"
done
for s in ${systems//,/ }; do
  [[ $s == pdserve || $s == llamacpp ]] || usage_error "--systems takes pdserve and/or llamacpp, got '$s'"
done
cpus=${PDSERVE_BENCH_CPUS:-0,1}
[[ $cpus =~ ^[0-9]+,[0-9]+$ ]] || usage_error "PDSERVE_BENCH_CPUS must be two CPUs, e.g. 0,1"
cache=${PDSERVE_BENCH_CACHE:-$HOME/.cache/pdserve-bench}
build_dir=${PDSERVE_BUILD_DIR:-$root/build}
per_slot=$((2 * prompt_tokens + output_tokens + 64))
say() { echo "serve_vs_llamacpp: $*" >&2; }
fail() { say "$*"; exit 1; }

# Sets $llama_server, building it first when it is not there yet.
build_llama_server() {
  local version=0.3.36
  local src=$cache/llama_cpp_python-$version/vendor/llama.cpp bdir=$cache/llama-server-build
  llama_server=$bdir/bin/llama-server
  [ -x "$llama_server" ] && return 0
  mkdir -p "$cache"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    say "fetching the llama-cpp-python $version sdist into $cache..."
    python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      "llama-cpp-python==$version" -d "$cache/sdist" >&2 || fail "pip download failed"
    tar -xzf "$cache/sdist/llama_cpp_python-$version.tar.gz" -C "$cache"
  fi
  say "building llama-server into $bdir (once; many minutes on 2 CPUs)..."
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache
                                            -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # The UI download and OpenSSL/CURL are off: the benchmark needs neither, and no network may
  # be reachable.
  cmake -S "$src" -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DGGML_CUDA=OFF -DGGML_BLAS=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF "${launcher[@]}" >/dev/null
  cmake --build "$bdir" --target llama-server -j2 >&2 || fail "building llama-server failed"
}

# Waits until GET URL answers 200, for at most $2 seconds, while process $3 lives.
wait_http() {
  local url=$1 limit=$2 pid=$3 waited=0
  until python3 -c 'import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)' "$url" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((waited++ < limit)) || return 1
    sleep 1
  done
}

free_ports() {  # prints $1 free TCP ports of 127.0.0.1
  python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

run_sweep() {  # system URL: the client's sweep, its table into the system's log
  python3 "$root/bench/load/load_gen.py" --openai "$2" --sweep "$rates" --duration-s "$duration_s" \
    --prompt-tokens "$prompt_tokens:$prompt_tokens" --output-tokens "$output_tokens:$output_tokens" \
    --ttft-slo-ms "$ttft_slo_ms" --tpot-slo-ms "$itl_slo_ms" --timeout-s "$timeout_s" --warmup 2 \
    --results "$out/$1.json" | tee -a "$out/$1.log" >&2 || true
  [ -s "$out/$1.json" ] || fail "$1: the sweep wrote no results (see $out/$1.log)"
}

tmp=$(mktemp -d)
server_pid="" pdserve_config=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; fi
  if [ -n "$pdserve_config" ]; then
    PDSERVE_RUN_DIR=$tmp/run PDSERVE_BUILD_DIR=$build_dir "$root/deploy/launch.sh" --stop \
      "$pdserve_config" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

run_llamacpp() {
  build_llama_server
  local port
  port=$(free_ports 1)
  say "llama.cpp: llama-server on CPUs $cpus, $llama_threads threads, $slots slots, port $port"
  taskset -c "$cpus" "$llama_server" -m "$model" --host 127.0.0.1 --port "$port" \
    -t "$llama_threads" -tb "$llama_threads" \
    -np "$slots" -c $((slots * per_slot)) --cont-batching >"$tmp/llama-server.log" 2>&1 &
  server_pid=$!
  wait_http "http://127.0.0.1:$port/health" 120 "$server_pid" \
    || { tail -20 "$tmp/llama-server.log" >&2; fail "llama-server did not come up"; }
  echo "# llama-server $("$llama_server" --version 2>&1 | head -1)" >"$out/llamacpp.log"
  run_sweep llamacpp "http://127.0.0.1:$port"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  cat "$tmp/llama-server.log" >>"$out/llamacpp.log"
}

run_pdserve() {
  local router_bin=$build_dir/router/pdserve-router ports
  [ -x "$router_bin" ] || fail "pdserve: no $router_bin (build pdserve, or set PDSERVE_BUILD_DIR)"
  "$router_bin" --help 2>&1 | grep -q -- --http-listen \
    || fail "pdserve: $router_bin has no --http-listen (no HTTP front in this build)"
  read -r -a ports <<<"$(free_ports 4)"
  pdserve_config=$tmp/serve_vs_llamacpp.conf
  cat >"$pdserve_config" <<EOF
model=$model
host=127.0.0.1
router_port=${ports[0]}
http_port=${ports[1]}
prefill_workers=1
decode_workers=1
prefill_base_port=${ports[2]}
decode_base_port=${ports[3]}
threads=1
prefill_cpus=${cpus%,*}
decode_cpus=${cpus#*,}
router_cpus=$cpus
max_batch=$slots
kv_pool_tokens=$((slots * per_slot))
EOF
  say "pdserve: prefill on CPU ${cpus%,*}, decode on CPU ${cpus#*,}, router on $cpus, HTTP port ${ports[1]}"
  PDSERVE_RUN_DIR=$tmp/run PDSERVE_BUILD_DIR=$build_dir "$root/deploy/launch.sh" --detach \
    "$pdserve_config" >&2 || { pdserve_config=""; fail "pdserve did not come up"; }
  local router_pid
  router_pid=$(awk '$1 == "router" { print $2 }' "$tmp/run/pids")
  wait_http "http://127.0.0.1:${ports[1]}/v1/models" 60 "$router_pid" \
    || fail "pdserve's HTTP front did not answer on port ${ports[1]}"
  echo "# pdserve $(git -C "$root" describe --always --dirty 2>/dev/null)" >"$out/pdserve.log"
  run_sweep pdserve "http://127.0.0.1:${ports[1]}"
  PDSERVE_RUN_DIR=$tmp/run PDSERVE_BUILD_DIR=$build_dir "$root/deploy/launch.sh" --stop \
    "$pdserve_config" >/dev/null
  pdserve_config=""
  cat "$tmp"/run/*.log >>"$out/pdserve.log" 2>/dev/null || true
}

[ -n "$model" ] || model=$(PDSERVE_MODELS_DIR=${PDSERVE_MODELS_DIR:-$cache/models} \
                           "$root/deploy/fetch-model.sh")
[ -f "$model" ] || usage_error "no model file $model"
mkdir -p "$out"
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" 'BEGIN { exit !(l > 1.0) }'; then
  say "warning: load average $load1: other work shares these CPUs; it slows llama.cpp's" \
      "threads (they meet at a barrier every layer) far more than pdserve's one-thread workers," \
      "so compare only runs from a quiet machine"
fi
tables=()
for s in ${systems//,/ }; do
  rm -f "$out/$s.json" "$out/$s.log"
  "run_$s"
  tables+=("$([ "$s" = llamacpp ] && echo llama.cpp || echo "$s")=$out/$s.json")
done
echo "pdserve vs llama.cpp serving: $(basename "$model"), CPUs $cpus of $(nproc), $slots slots," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$root/bench/serve_compare_table.py" --combined "$out/results.json" "${tables[@]}"
echo "results: $out/results.json; each system's client table and server log: $out/<system>.log"
