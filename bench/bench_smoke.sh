#!/bin/bash
# bench_smoke: runs each CPU benchmark in a tiny mode on stories260K and checks that it exits 0
# and prints its table. Registered as the ctest test bench_smoke (bench/CMakeLists.txt).
# usage: bench_smoke.sh KV_CACHE_SPEEDUP_BIN ENGINE_BIN MODEL_GGUF
set -u
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
exit $failed
