#!/usr/bin/env python3
"""A load generator for a pdserve router: N requests with Poisson arrivals at a given rate, prompt
and output lengths drawn uniformly from given ranges; prints TTFT and TPOT p50/p90/p99, the
throughput, and the SLO attainment (the share of requests meeting both the TTFT and the TPOT
limit). With --sweep RATES it runs each rate in turn and prints the goodput: the highest rate
whose attainment is >= 90% (DistServe's definition; ../shared/ANCHORS.md).

    python3 bench/load/load_gen.py --router 127.0.0.1:50051 -n 32 --rate 2 \
        --prompt-tokens 32:256 --output-tokens 16:128 --ttft-slo-ms 1000 --tpot-slo-ms 100
    python3 bench/load/load_gen.py ... --sweep 0.5,1,2,4

TTFT and TPOT are measured here, at the client: TTFT = send → first text chunk, TPOT =
(end − first chunk) / (completion tokens − 1), as ANCHORS.md defines them. Every request uses
ignore_eos, so its output is exactly its drawn length. Prompts are words from a fixed list, one
word ≈ one token; the table shows the mean prompt length the router counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import pathlib
import random
import sys
import tempfile
import threading
import time

import grpc
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]

WORDS = ("the a little girl named Lily went to park and saw big red ball she was very happy "
         "her mom said play with friend dog cat tree sun day time one once upon there lived "
         "boy who liked run jump sing story about bird fly sky blue green house garden flower "
         "water river small kind old new good nice warm cold rain snow home friends together "
         "learned shared found made looked smiled wanted asked helped").split()


def load_stubs():
    out = tempfile.mkdtemp(prefix="pdserve_load_")
    proto = ROOT / "proto"
    if protoc.main(["protoc", f"-I{proto}", f"--python_out={out}", f"--grpc_python_out={out}",
                    *sorted(str(p) for p in proto.glob("*.proto"))]) != 0:
        sys.exit(f"could not compile {proto}/*.proto")
    sys.path.insert(0, out)
    return (importlib.import_module("router_pb2"), importlib.import_module("router_pb2_grpc"),
            importlib.import_module("common_pb2"))


router_pb2, router_pb2_grpc, common_pb2 = load_stubs()


def int_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(":")
    lo, hi = int(lo), int(hi or lo)
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX with 1 <= MIN <= MAX, got {text}")
    return lo, hi


@dataclasses.dataclass
class Result:
    ok: bool
    ttft: float = 0.0
    tpot: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    end: float = 0.0
    error: str = ""


def percentile(values: list, q: float) -> float:
    """Linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def one_request(stub, prompt: str, max_tokens: int, timeout_s: float) -> Result:
    request = router_pb2.GenerateRequest(text=prompt, max_tokens=max_tokens, ignore_eos=True)
    start = time.monotonic()
    first = None
    final = None
    try:
        for response in stub.Generate(request, timeout=timeout_s):
            if response.HasField("chunk"):
                if first is None and response.chunk.token_ids:
                    first = time.monotonic()
            else:
                final = response.final
    except grpc.RpcError as error:
        return Result(ok=False, error=f"{error.code().name}: {error.details()}")
    end = time.monotonic()
    if final is None or first is None:
        return Result(ok=False, error="stream ended without tokens or without a final message")
    n = final.usage.completion_tokens
    return Result(ok=True, ttft=first - start, tpot=(end - first) / (n - 1) if n > 1 else 0.0,
                  prompt_tokens=final.usage.prompt_tokens, completion_tokens=n, end=end)


def run_rate(stub, rate: float, args, rng: random.Random) -> dict:
    """Sends args.requests requests with exponential inter-arrival times (mean 1/rate)."""
    plans = []
    t = 0.0
    for _ in range(args.requests):
        n_prompt = rng.randint(*args.prompt_tokens)
        prompt = " ".join(rng.choice(WORDS) for _ in range(n_prompt))
        plans.append((t, prompt, rng.randint(*args.output_tokens)))
        t += rng.expovariate(rate) if rate > 0 and math.isfinite(rate) else 0.0
    results: list = [None] * len(plans)
    start = time.monotonic()

    def worker(i, at, prompt, max_tokens):
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        results[i] = one_request(stub, prompt, max_tokens, args.timeout_s)

    threads = [threading.Thread(target=worker, args=(i, *plan)) for i, plan in enumerate(plans)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ok = [r for r in results if r.ok]
    duration = max((r.end for r in ok), default=start) - start
    met = [r for r in ok if r.ttft * 1e3 <= args.ttft_slo_ms and r.tpot * 1e3 <= args.tpot_slo_ms]
    errors = sorted({r.error for r in results if not r.ok})
    return {
        "rate": rate, "n": len(results), "ok": len(ok), "errors": errors,
        "ttft": [percentile([r.ttft for r in ok], q) * 1e3 for q in (50, 90, 99)],
        "tpot": [percentile([r.tpot for r in ok], q) * 1e3 for q in (50, 90, 99)],
        "req_s": len(ok) / duration if duration > 0 else math.nan,
        "tok_s": sum(r.completion_tokens for r in ok) / duration if duration > 0 else math.nan,
        "prompt_mean": sum(r.prompt_tokens for r in ok) / len(ok) if ok else math.nan,
        "attainment": len(met) / len(results) if results else 0.0,
    }


HEADER = (f"{'rate/s':>7} {'ok':>7} {'prompt':>6} {'TTFT p50':>9} {'p90':>8} {'p99':>8} "
          f"{'TPOT p50':>9} {'p90':>7} {'p99':>7} {'req/s':>6} {'tok/s':>7} {'SLO ok':>7}")


def row(r: dict) -> str:
    return (f"{r['rate']:>7.2f} {r['ok']:>3}/{r['n']:<3} {r['prompt_mean']:>6.0f} "
            f"{r['ttft'][0]:>9.1f} {r['ttft'][1]:>8.1f} {r['ttft'][2]:>8.1f} "
            f"{r['tpot'][0]:>9.2f} {r['tpot'][1]:>7.2f} {r['tpot'][2]:>7.2f} "
            f"{r['req_s']:>6.2f} {r['tok_s']:>7.1f} {r['attainment'] * 100:>6.1f}%")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--router", default="127.0.0.1:50051")
    p.add_argument("-n", "--requests", type=int, default=32)
    p.add_argument("--rate", type=float, default=1.0, help="requests/s (Poisson); inf = all at once")
    p.add_argument("--sweep", help="comma-separated rates; prints the goodput")
    p.add_argument("--prompt-tokens", type=int_range, default=(32, 128), metavar="MIN:MAX")
    p.add_argument("--output-tokens", type=int_range, default=(16, 64), metavar="MIN:MAX")
    p.add_argument("--ttft-slo-ms", type=float, default=1000.0)
    p.add_argument("--tpot-slo-ms", type=float, default=100.0)
    p.add_argument("--timeout-s", type=float, default=300.0, help="per request")
    p.add_argument("--seed", type=int, default=0, help="seeds arrivals and lengths")
    args = p.parse_args()
    if args.requests < 1:
        p.error("--requests must be >= 1")
    try:
        rates = [float(x) for x in args.sweep.split(",")] if args.sweep else [args.rate]
    except ValueError:
        p.error(f"--sweep takes comma-separated numbers, got {args.sweep}")
    if any(not r > 0 for r in rates):
        p.error("rates must be > 0")

    with grpc.insecure_channel(args.router) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            print(f"load_gen: cannot reach the router at {args.router}", file=sys.stderr)
            return 1
        stub = router_pb2_grpc.RouterStub(channel)
        print(f"# {args.requests} requests per rate; prompt {args.prompt_tokens[0]}-"
              f"{args.prompt_tokens[1]} words, output {args.output_tokens[0]}-"
              f"{args.output_tokens[1]} tokens; SLO TTFT <= {args.ttft_slo_ms:g} ms and "
              f"TPOT <= {args.tpot_slo_ms:g} ms; latencies in ms")
        print(HEADER, flush=True)
        summaries = []
        failed = False
        for rate in rates:
            r = run_rate(stub, rate, args, random.Random(args.seed))
            summaries.append(r)
            print(row(r), flush=True)
            for e in r["errors"]:
                print(f"#   error at rate {rate:g}: {e}", file=sys.stderr)
            failed = failed or r["ok"] < r["n"]
    if args.sweep:
        good = [r["rate"] for r in summaries if r["attainment"] >= 0.9]
        print(f"goodput: {max(good):g} req/s (highest rate with >= 90% SLO attainment)" if good
              else "goodput: none (no rate reached 90% SLO attainment)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
