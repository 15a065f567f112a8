#!/usr/bin/env python3
"""llama.cpp on the same GGUF, threads and workload as bench/engine: the baseline to beat.

Prefill tokens/s: one eval() of the prompt (one llama_decode call: n_batch >= prompt).
Decode tokens/s: --decode-steps single-token evals after the prompt, greedy (argmax of the last
logits, as bench/engine does), batch 1. Batch 8 is n/a: the Python API decodes one sequence.
Every timing is the best of --reps. Memory: VmRSS / VmHWM of this process (Python included).

Needs llama-cpp-python (bench/engine_vs_llamacpp.sh builds it into build-bench/llama-cpp-py and
passes --llama-cpp-path). Prints a table; with --results appends CSV rows
engine,threads,batch,metric,value like bench/engine.
Exit status: 0 when the table printed, 1 when llama-cpp-python cannot be loaded or a run failed,
2 for bad usage.
"""
import argparse
import ctypes
import os
import sys
import time

# The same text as kPromptText in bench/engine_bench.cc, repeated and cut the same way.
PROMPT_TEXT = (
    "The history of the printing press begins in the fifteenth century, when movable type made "
    "books cheaper to produce and ideas faster to spread across Europe. ")


def proc_status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def make_prompt(llm, n_tokens):
    text = PROMPT_TEXT
    while True:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(ids) >= n_tokens:
            return ids[:n_tokens]
        text += PROMPT_TEXT


def last_argmax(llama_cpp, np, llm):
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                   shape=(llm.n_vocab(),))
    return int(logits.argmax())


def run_threads(llama_cpp, np, args, n_threads):
    n_ctx = args.prompt_tokens + args.decode_steps + 16
    n_batch = max(512, args.prompt_tokens)
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                          n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
    prompt = make_prompt(llm, args.prompt_tokens)

    llm.reset()
    llm.eval(prompt[:8])  # warm-up: pages the weights in, starts the threads

    best_prefill = float("inf")
    for _ in range(args.reps):
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        best_prefill = min(best_prefill, time.perf_counter() - start)
    first_token = last_argmax(llama_cpp, np, llm)

    best_decode = float("inf")
    for _ in range(args.reps):
        llm.n_tokens = len(prompt)  # eval() drops the cached positions from here on
        token = first_token
        start = time.perf_counter()
        for _ in range(args.decode_steps):
            llm.eval([token])
            token = last_argmax(llama_cpp, np, llm)
        best_decode = min(best_decode, time.perf_counter() - start)
    rss = proc_status_mib("VmRSS")
    del llm
    step = best_decode / args.decode_steps
    return {"prefill_tok_s": args.prompt_tokens / best_prefill,
            "prefill_ms": best_prefill * 1e3,
            "decode_tok_s": 1.0 / step,
            "decode_step_ms": step * 1e3,
            "vmrss_mib": rss}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", default="1,2", help="comma-separated (default 1,2)")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-steps", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--results", help="append CSV rows to this file")
    parser.add_argument("--llama-cpp-path", help="a pip --target folder holding llama_cpp")
    args = parser.parse_args()
    if args.llama_cpp_path:
        sys.path.insert(0, args.llama_cpp_path)
    try:
        import numpy as np
        import llama_cpp
    except ImportError as e:
        print(f"llamacpp_baseline.py: {e}: build it with bench/engine_vs_llamacpp.sh",
              file=sys.stderr)
        return 1

    threads = [int(t) for t in args.threads.split(",")]
    results = {t: run_threads(llama_cpp, np, args, t) for t in threads}
    hwm = proc_status_mib("VmHWM")
    rss = max(r["vmrss_mib"] for r in results.values())
    file_mib = os.path.getsize(args.model) / (1024.0 * 1024.0)

    print(f"llama.cpp (llama-cpp-python {llama_cpp.__version__}): "
          f"{os.path.basename(args.model)}, prompt {args.prompt_tokens} tokens, "
          f"{args.decode_steps} decode steps after it, best of {args.reps}")
    header = ["threads", "phase", "batch", "tokens/s", "step ms"]
    rows = []
    for t, r in results.items():
        rows.append([str(t), "prefill", "1", f"{r['prefill_tok_s']:.1f}", f"{r['prefill_ms']:.2f}"])
        rows.append([str(t), "decode", "1", f"{r['decode_tok_s']:.1f}",
                     f"{r['decode_step_ms']:.2f}"])
    widths = [max(len(row[c]) for row in rows + [header]) for c in range(len(header))]
    fmt = lambda row: "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                                for c, (cell, w) in enumerate(zip(row, widths)))
    print(fmt(header))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for row in rows:
        print(fmt(row))
    print(f"memory: VmRSS {rss:.1f} MiB, VmHWM {hwm:.1f} MiB (Python included); "
          f"model file {file_mib:.1f} MiB")

    if args.results:
        with open(args.results, "a") as out:
            for t, r in results.items():
                out.write(f"llama.cpp,{t},1,prefill_tok_s,{r['prefill_tok_s']}\n")
                out.write(f"llama.cpp,{t},1,decode_tok_s,{r['decode_tok_s']}\n")
                out.write(f"llama.cpp,{t},1,decode_step_ms,{r['decode_step_ms']}\n")
            out.write(f"llama.cpp,,,vmrss_mib,{rss}\n")
            out.write(f"llama.cpp,,,vmhwm_mib,{hwm}\n")
            out.write(f"llama.cpp,,,model_file_mib,{file_mib}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
