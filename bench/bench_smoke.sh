#!/bin/bash
# bench_smoke: runs each CPU benchmark in a tiny mode on stories260K and checks that it exits 0
# and prints its table. Registered as the ctest test bench_smoke (bench/CMakeLists.txt).
#
# Usage: bench/bench_smoke.sh KV_CACHE_SPEEDUP_BIN ENGINE_BIN MODEL_GGUF   (-h, --help prints this)
#   bench/transfer's binaries are found in transfer/ beside KV_CACHE_SPEEDUP_BIN.
# Environment: none.
# Exit status: 0 when every benchmark ran and printed its table, 1 when one did not, 2 for bad
# usage.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
usage_only_help "$@"
[ $# -eq 3 ] || usage_error "takes 3 arguments, got $#"
kv_bin=$1 engine_bin=$2 model=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

check() {  # name, output file, pattern that the table must contain
  if grep -q -- "$3" "$2"; then
    echo "ok: $1"
  else
    echo "FAILED: $1: no '$3' in its output:"; cat "$2"; failed=1
  fi
}

if "$kv_bin" --model "$model" --threads 1 --new-tokens 2,4,8 --csv "$tmp/kv.csv" --no-plot \
    >"$tmp/kv.out" 2>"$tmp/kv.err"; then
  check kv_cache_speedup "$tmp/kv.out" "with KV cache (s)"
  check "kv_cache_speedup speedup line" "$tmp/kv.out" "speedup with the KV cache at N=8"
  check "kv_cache_speedup csv" "$tmp/kv.csv" "^8,"
else
  echo "FAILED: kv_cache_speedup exited $?"; cat "$tmp/kv.out" "$tmp/kv.err"; failed=1
fi

if "$engine_bin" --model "$model" --threads 1,2 --batch 1,2 --prompt-tokens 8 --decode-steps 4 \
    --reps 1 --memcpy-mib 4 --results "$tmp/engine.csv" >"$tmp/engine.out" 2>"$tmp/engine.err"; then
  check engine "$tmp/engine.out" "tokens/s"
  check "engine decode row" "$tmp/engine.out" "decode"
  check "engine memory line" "$tmp/engine.out" "VmHWM"
  check "engine results" "$tmp/engine.csv" "^pdserve,2,2,decode_tok_s,"
else
  echo "FAILED: engine exited $?"; cat "$tmp/engine.out" "$tmp/engine.err"; failed=1
fi

# bench/transfer (built beside the other benches, in transfer/): both in --quick mode.
transfer_dir=$(dirname "$kv_bin")/transfer
if "$transfer_dir/kv_transfer" --quick >"$tmp/transfer.out" 2>"$tmp/transfer.err" &&
    "$transfer_dir/decode_interference" --quick --model "$model" >>"$tmp/transfer.out" 2>>"$tmp/transfer.err"; then
  check "kv_transfer ratios" "$tmp/transfer.out" "shm / memcpy"
  check "decode_interference" "$tmp/transfer.out" "shm: one arrival"
else
  echo "FAILED: bench/transfer exited $?"; cat "$tmp/transfer.out" "$tmp/transfer.err"; failed=1
fi
exit $failed
