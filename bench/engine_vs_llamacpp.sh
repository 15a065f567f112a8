#!/bin/bash
# engine_vs_llamacpp.sh: bench/engine against llama.cpp (llama-cpp-python) on the same GGUF, the
# same prompt and decode lengths and the same thread counts, one thread count at a time, ours then
# theirs back to back (so both see the same load on a shared machine), --rounds times over, then
# one side-by-side table with ratios of the best of each. Each run's own table goes to
# $BUILD_DIR/engine_vs_llamacpp.log.
#
# Usage: bench/engine_vs_llamacpp.sh [--model GGUF] [--threads 1,2] [--prompt-tokens 128]
#                                    [--decode-steps 32] [--reps 3] [--rounds 2]
#   --model defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf (deploy/fetch-model.sh fetches it);
#   -h, --help prints this.
# Environment: BUILD_DIR (default build-bench): where bench/engine is built and where llama.cpp
# is built once, into $BUILD_DIR/llama-cpp-py (many minutes on 2 cores; reused after).
# Exit status: 0 when the table printed, 2 for bad usage, else the failing step's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib/usage.sh"
build=${BUILD_DIR:-$root/build-bench}
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
threads=1,2 prompt_tokens=128 decode_steps=32 reps=3 rounds=2
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --prompt-tokens) prompt_tokens=$2; shift 2 ;;
    --decode-steps) decode_steps=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
[ -f "$model" ] || model=$("$root/deploy/fetch-model.sh")

if [ ! -x "$build/bench/engine" ]; then
  cmake -S "$root" -B "$build" -G Ninja >/dev/null
  ninja -C "$build" -j2 bench_engine
fi

llama_py=$build/llama-cpp-py
if ! PYTHONPATH=$llama_py python3 -c 'import llama_cpp' 2>/dev/null; then
  echo "building llama-cpp-python 0.3.36 into $llama_py (once; many minutes)..." >&2
  CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF \
-DGGML_VULKAN=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=2 \
    python3 -m pip install --no-cache-dir --target "$llama_py" llama-cpp-python==0.3.36 >&2
fi

results=$build/engine_vs_llamacpp.csv
log=$build/engine_vs_llamacpp.log
rm -f "$results" "$log"
common=(--model "$model" --prompt-tokens "$prompt_tokens" --decode-steps "$decode_steps"
        --reps "$reps" --results "$results")
for round in $(seq "$rounds"); do
  for t in ${threads//,/ }; do
    echo "round $round, $t threads: pdserve" >&2
    "$build/bench/engine" "${common[@]}" --threads "$t" --batch 1,8 >>"$log"
    echo "round $round, $t threads: llama.cpp" >&2
    python3 "$root/bench/llamacpp_baseline.py" "${common[@]}" --threads "$t" \
      --llama-cpp-path "$llama_py" >>"$log"
  done
done
echo "pdserve vs llama.cpp: $(basename "$model"), prompt $prompt_tokens tokens, $decode_steps" \
     "decode steps, best of $reps x $rounds rounds, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$root/bench/engine_compare_table.py" "$results"
echo "each run's table: $log"
