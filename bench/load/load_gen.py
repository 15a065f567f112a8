#!/usr/bin/env python3
"""A load generator for a pdserve router (grpc.aio, one process), or for any OpenAI-compatible
server (--openai URL: pdserve's HTTP front, llama.cpp's llama-server; open loop only), in three
modes:

open loop (default): N requests (-n, default 32), or as many as arrive in --duration-s, with
  Poisson arrivals at --rate; prints TTFT and TPOT p50/p90/p99, ITL p50/p99, the throughput, the
  goodput (requests/s meeting the SLO) and the SLO attainment (the share of requests meeting both
  the TTFT and the TPOT limit). With --sweep RATES it runs each rate in turn and prints the
  highest rate whose attainment is >= 90% (DistServe's goodput; ../shared/ANCHORS.md). --results
  FILE writes every rate's numbers as JSON; --warmup K first sends K requests one at a time,
  not counted.
closed loop (--concurrency C): C clients each send a request, read it to the end and send the
  next, until --duration-s has passed or -n requests have been sent (whichever comes first;
  requests in flight then are read to their end); after a request that was not served a client
  waits --backoff-ms. Prints tokens/s, requests/s,
  the served, refused (RESOURCE_EXHAUSTED) and failed requests (by status code), TTFT/TPOT
  percentiles, then one JSON line with the same numbers. Scales to 1,000 clients.
never read (--never-read K): opens K Generate streams and never reads them (a slow client),
  after printing "load_gen: K unread streams open" to stderr; with --concurrency they stay open
  during the closed loop, alone they stay open for --duration-s, or until SIGINT/SIGTERM. Then
  they are cancelled, and the JSON line says how many were still open and how the others ended.

  python3 bench/load/load_gen.py --router 127.0.0.1:50051 -n 32 --rate 2 \\
      --prompt-tokens 32:256 --output-tokens 16:128 --ttft-slo-ms 1000 --tpot-slo-ms 100
  python3 bench/load/load_gen.py ... --sweep 0.5,1,2,4
  python3 bench/load/load_gen.py ... --concurrency 100 --duration-s 30
  python3 bench/load/load_gen.py ... --never-read 50 --concurrency 10 -n 100
  python3 bench/load/load_gen.py --openai http://127.0.0.1:8080 --sweep 1,2,4 --duration-s 30

TTFT = send -> first text chunk, TPOT = (end - first chunk) / (completion tokens - 1), ITL = the
gap between consecutive text chunks (a chunk may carry several tokens: the JSON's
tokens_per_chunk), measured here at the client (load_results.py); every request uses ignore_eos
(and, over HTTP, temperature 0: openai_client.py); one prompt word ~ one token; the table shows
the mean prompt length the server counted.

Exit status: 0 when every request was served (open loop), or none failed other than by being
refused (closed loop), or the unread streams were held (never read alone); 1 when the router or
server cannot be reached or a request failed (the table and --results are written all the same);
2 for bad usage. The JSON line's keys (closed loop, never read): mode, concurrency, never_read,
requests, served, refused, failed ({code: count}), duration_s, requests_per_s, tokens_per_s,
ttft_ms and tpot_ms ({p50, p90, p99}), unread_streams ({opened, still_open, ended: {code:
count}}); null where nothing was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import itertools
import json
import math
import os
import random
import signal
import sys
import threading
import time
from typing import Awaitable, Callable

import grpc.aio

import load_client as lc
import load_results as lr
import openai_client as oc

# Streams per channel (connection) in the closed loop: below the 100 concurrent streams many
# HTTP/2 servers allow on one connection.
STREAMS_PER_CHANNEL = 100


def int_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(":")
    try:
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, got {text}") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX with 1 <= MIN <= MAX, got {text}")
    return lo, hi


def parse_args(argv: list) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--router", default="127.0.0.1:50051", help="host:port (default %(default)s)")
    p.add_argument("--openai", metavar="URL",
                   help="an OpenAI-compatible server, http://HOST:PORT, instead of a router: "
                        "streamed POST /v1/completions (open loop only)")
    p.add_argument("--model-name", help="--openai: the request's model (default: the first "
                                        "GET /v1/models lists)")
    p.add_argument("--api-key", default=os.environ.get("PDSERVE_API_KEY"),
                   help="--openai: sent as 'Authorization: Bearer KEY' (default $PDSERVE_API_KEY)")
    p.add_argument("-n", "--requests", type=int,
                   help="requests per rate (open loop; default 32 without --duration-s), or in "
                        "all (closed loop)")
    p.add_argument("--rate", type=float, default=1.0, help="requests/s (Poisson); inf = all at once")
    p.add_argument("--sweep", help="comma-separated rates; prints the goodput")
    p.add_argument("--concurrency", type=int, metavar="C", help="closed loop with C clients")
    p.add_argument("--duration-s", type=float,
                   help="how long each rate of the open loop sends, or the closed loop sends (or "
                        "the unread streams are held); with -n too, whichever ends first")
    p.add_argument("--warmup", type=int, default=0, metavar="K",
                   help="open loop: K requests one at a time first, not counted")
    p.add_argument("--results", metavar="FILE", help="open loop: write every rate's numbers as JSON")
    p.add_argument("--backoff-ms", type=float, default=100.0,
                   help="closed loop: a client's pause after a request not served (default 100)")
    p.add_argument("--never-read", type=int, default=0, metavar="K",
                   help="open K Generate streams and never read them")
    p.add_argument("--channels", type=int,
                   help=f"connections to the router (default: one per {STREAMS_PER_CHANNEL} "
                        "streams)")
    p.add_argument("--prompt-tokens", type=int_range, default=(32, 128), metavar="MIN:MAX")
    p.add_argument("--output-tokens", type=int_range, default=(16, 64), metavar="MIN:MAX")
    p.add_argument("--ttft-slo-ms", type=float, default=1000.0)
    p.add_argument("--tpot-slo-ms", type=float, default=100.0)
    p.add_argument("--timeout-s", type=float, default=300.0, help="per request")
    p.add_argument("--seed", type=int, default=0, help="seeds arrivals and lengths")
    args = p.parse_args(argv)
    if args.requests is not None and args.requests < 1:
        p.error("--requests must be >= 1")
    if args.concurrency is not None and args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    if args.never_read < 0:
        p.error("--never-read must be >= 0")
    if args.duration_s is not None and not args.duration_s > 0:
        p.error("--duration-s must be > 0")
    if args.channels is not None and args.channels < 1:
        p.error("--channels must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.openai:
        if args.concurrency is not None or args.never_read:
            p.error("--openai is for the open loop, not with --concurrency or --never-read")
        try:
            args.endpoint = oc.Endpoint.parse(args.openai, args.api_key)
        except ValueError as e:
            p.error(f"--openai: {e}")
    if args.concurrency is not None:
        if args.sweep:
            p.error("--sweep is for the open loop, not with --concurrency")
        if args.requests is None and args.duration_s is None:
            p.error("--concurrency needs --duration-s or -n (or both)")
    args.open_loop = args.concurrency is None and not args.never_read
    if args.open_loop:
        if args.duration_s is None:
            args.requests = args.requests or 32
        try:
            args.rates = [float(x) for x in args.sweep.split(",")] if args.sweep else [args.rate]
        except ValueError:
            p.error(f"--sweep takes comma-separated numbers, got {args.sweep}")
        if any(not r > 0 for r in args.rates):
            p.error("rates must be > 0")
        if args.requests is None and not all(math.isfinite(r) for r in args.rates):
            p.error("an infinite rate needs -n")
    return args


# ---- open loop -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Target:
    """Where the open loop sends: draw(rng) makes a request, send(request) times it (a Result)."""
    name: str  # the router's address or the server's URL, for the report
    protocol: str  # "grpc" or "openai"
    draw: Callable[[random.Random], object]
    send: Callable[[object], Awaitable[lr.Result]]


def grpc_target(stub, router_pb2, args) -> Target:
    return Target(args.router, "grpc",
                  lambda rng: lc.random_request(router_pb2, rng, args.prompt_tokens,
                                                args.output_tokens),
                  lambda request: lc.timed_request(stub, request, args.timeout_s))


def openai_target(model: str, args) -> Target:
    return Target(str(args.endpoint), "openai",
                  lambda rng: oc.random_completion(model, rng, args.prompt_tokens,
                                                   args.output_tokens),
                  lambda request: oc.timed_completion(args.endpoint, request, args.timeout_s))


HEADER = (f"{'rate/s':>7} {'ok':>7} {'prompt':>6} {'TTFT p50':>9} {'p90':>8} {'p99':>8} "
          f"{'TPOT p50':>9} {'p90':>7} {'p99':>7} {'ITL p50':>8} {'p99':>7} {'req/s':>6} "
          f"{'tok/s':>7} {'good/s':>6} {'SLO ok':>7}")


def row(rate: float, s: dict) -> str:
    return (f"{rate:>7.2f} {s['served']:>3}/{s['n']:<3} {s['prompt_mean']:>6.0f} "
            f"{s['ttft_ms'][0]:>9.1f} {s['ttft_ms'][1]:>8.1f} {s['ttft_ms'][2]:>8.1f} "
            f"{s['tpot_ms'][0]:>9.2f} {s['tpot_ms'][1]:>7.2f} {s['tpot_ms'][2]:>7.2f} "
            f"{s['itl_ms'][0]:>8.2f} {s['itl_ms'][2]:>7.2f} "
            f"{s['req_s']:>6.2f} {s['tok_s']:>7.1f} {s['goodput_req_s']:>6.2f} "
            f"{s['attainment'] * 100:>6.1f}%")


def arrivals(target: Target, rng: random.Random, rate: float, args) -> list:
    """(send time from the rate's start, request) pairs with exponential inter-arrival times
    (mean 1/rate): args.requests of them, or those before args.duration_s, whichever are fewer."""
    plans = []
    at = 0.0
    while ((args.requests is None or len(plans) < args.requests)
           and (args.duration_s is None or at < args.duration_s)):
        plans.append((at, target.draw(rng)))
        at += rng.expovariate(rate) if math.isfinite(rate) else 0.0
    return plans


async def run_rate(target: Target, rate: float, args) -> dict:
    """Sends one rate's arrivals (the same requests at every rate and for every target: the rng
    is seeded alike) and summarizes them once every request has ended."""
    plans = arrivals(target, random.Random(args.seed), rate, args)
    start = time.monotonic()

    async def send_at(at: float, request):
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        return await target.send(request)

    results = await asyncio.gather(*(send_at(at, request) for at, request in plans))
    return lr.summarize_with_slo(results, start, args.ttft_slo_ms, args.tpot_slo_ms,
                                 args.duration_s or 0.0)


def json_safe(x):
    """x with NaN and infinities as None (JSON has neither)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def write_results(path: str, target: Target, args, summaries: list) -> None:
    """The JSON of --results: the load, the SLO, then one object per rate with summarize_with_slo's
    numbers (latency lists are [p50, p90, p99] in ms)."""
    document = {
        "target": target.name, "protocol": target.protocol,
        "prompt_words": args.prompt_tokens, "output_tokens": args.output_tokens,
        "requests_per_rate": args.requests, "duration_s_per_rate": args.duration_s,
        "seed": args.seed, "ttft_slo_ms": args.ttft_slo_ms, "tpot_slo_ms": args.tpot_slo_ms,
        "rates": [{"rate": rate, **s} for rate, s in summaries],
    }
    with open(path, "w") as f:
        json.dump(json_safe(document), f, indent=1)
        f.write("\n")


async def open_loop(target: Target, args) -> int:
    for i in range(args.warmup):
        result = await target.send(target.draw(random.Random(args.seed - 1 - i)))
        if not result.ok:
            print(f"# warm-up request failed: {result.error}", file=sys.stderr)
    sizing = (f"{args.requests} requests" if args.duration_s is None else
              f"{args.duration_s:g} s of arrivals" + (f" (at most {args.requests} requests)"
                                                      if args.requests else ""))
    print(f"# {target.name}: {sizing} per rate; prompt {args.prompt_tokens[0]}-"
          f"{args.prompt_tokens[1]} words, output {args.output_tokens[0]}-"
          f"{args.output_tokens[1]} tokens; SLO TTFT <= {args.ttft_slo_ms:g} ms and "
          f"TPOT <= {args.tpot_slo_ms:g} ms; latencies in ms")
    print(HEADER, flush=True)
    summaries = []
    for rate in args.rates:
        s = await run_rate(target, rate, args)
        summaries.append((rate, s))
        print(row(rate, s), flush=True)
        for code, e in sorted(s["errors"].items()):
            print(f"#   error at rate {rate:g}: {e}", file=sys.stderr)
    if args.sweep:
        good = [rate for rate, s in summaries if s["attainment"] >= 0.9]
        print(f"goodput: {max(good):g} req/s (highest rate with >= 90% SLO attainment)" if good
              else "goodput: none (no rate reached 90% SLO attainment)")
    if args.results:
        write_results(args.results, target, args, summaries)
    return 1 if any(s["served"] < s["n"] for _, s in summaries) else 0


# ---- closed loop and unread streams ---------------------------------------------------------------

async def closed_loop(stubs: list, router_pb2, args, stop: asyncio.Event) -> tuple[list, float]:
    """args.concurrency clients, client i on stubs[i % len(stubs)]; returns (results, start)."""
    start = time.monotonic()
    deadline = start + args.duration_s if args.duration_s else math.inf
    tickets = itertools.count() if args.requests is None else iter(range(args.requests))
    results = []

    async def client(i: int):
        rng = random.Random(args.seed * 1_000_003 + i)
        stub = stubs[i % len(stubs)]
        while not stop.is_set() and time.monotonic() < deadline and next(tickets, None) is not None:
            request = lc.random_request(router_pb2, rng, args.prompt_tokens, args.output_tokens)
            result = await lc.timed_request(stub, request, args.timeout_s)
            results.append(result)
            if not result.ok:
                await asyncio.sleep(args.backoff_ms / 1e3)

    await asyncio.gather(*(client(i) for i in range(args.concurrency)))
    return results, start


async def open_unread(stubs: list, router_pb2, args) -> list:
    rng = random.Random(args.seed + 7)
    calls = await asyncio.gather(
        *(lc.open_unread_stream(stubs[i % len(stubs)],
                                lc.random_request(router_pb2, rng, args.prompt_tokens,
                                                  args.output_tokens))
          for i in range(args.never_read)), return_exceptions=True)
    print(f"load_gen: {args.never_read} unread streams open", file=sys.stderr, flush=True)
    return calls


async def close_unread(calls: list) -> dict:
    """Cancels the unread streams; counts those still open and how the others had ended."""
    ended = collections.Counter()
    still_open = 0
    for call in calls:
        if isinstance(call, grpc.aio.AioRpcError):  # the request could not even be sent
            ended[call.code().name] += 1
        elif isinstance(call, BaseException):
            ended[type(call).__name__] += 1
        elif call.done():
            ended[(await call.code()).name] += 1
        else:
            still_open += 1
            call.cancel()
    return {"opened": len(calls), "still_open": still_open, "ended": dict(sorted(ended.items()))}


def finite_or_none(x: float):
    return x if math.isfinite(x) else None


def report(args, s: dict | None, unread: dict | None) -> None:
    """The human summary of a closed loop (if any), then the JSON line."""
    line = {"mode": "closed_loop" if s else "never_read", "concurrency": args.concurrency or 0,
            "never_read": args.never_read}
    if s:
        failed = ", ".join(f"{n} {code}" for code, n in s["failed"].items()) or "0"
        print(f"served {s['served']}, refused {s['refused']} (RESOURCE_EXHAUSTED), failed "
              f"{failed}; {s['req_s']:.2f} req/s, {s['tok_s']:.1f} tok/s over "
              f"{s['duration_s']:.1f} s")
        for name in ("ttft", "tpot"):
            p = s[f"{name}_ms"]
            print(f"{name.upper()} p50/p90/p99 ms: {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f}")
        for code, e in sorted(s["errors"].items()):
            print(f"#   {code}, e.g.: {e}", file=sys.stderr)
        line.update({
            "requests": s["n"], "served": s["served"], "refused": s["refused"],
            "failed": s["failed"], "duration_s": round(s["duration_s"], 3),
            "requests_per_s": finite_or_none(s["req_s"]), "tokens_per_s": finite_or_none(s["tok_s"]),
            **{f"{name}_ms": dict(zip(("p50", "p90", "p99"),
                                      (finite_or_none(v) for v in s[f"{name}_ms"])))
               for name in ("ttft", "tpot")},
        })
    if unread:
        line["unread_streams"] = unread
    print(json.dumps(line), flush=True)


async def closed_loop_and_unread(channels: list, router_pb2, router_pb2_grpc, args) -> int:
    stubs = [router_pb2_grpc.RouterStub(c) for c in channels]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    calls = await open_unread(stubs, router_pb2, args) if args.never_read else []
    summary = None
    if args.concurrency:
        print(f"# closed loop: {args.concurrency} clients on {len(channels)} connections, "
              + (f"{args.duration_s:g} s" if args.duration_s else "")
              + (" or " if args.duration_s and args.requests else "")
              + (f"{args.requests} requests" if args.requests else "")
              + f"; prompt {args.prompt_tokens[0]}-{args.prompt_tokens[1]} words, output "
              f"{args.output_tokens[0]}-{args.output_tokens[1]} tokens", flush=True)
        results, start = await closed_loop(stubs, router_pb2, args, stop)
        summary = lr.summarize(results, start)
    elif args.duration_s:
        try:
            await asyncio.wait_for(stop.wait(), args.duration_s)
        except asyncio.TimeoutError:
            pass
    else:
        await stop.wait()
    unread = await close_unread(calls) if args.never_read else None
    report(args, summary, unread)
    return 1 if summary and summary["failed"] else 0


async def openai_main(args) -> int:
    try:
        model = args.model_name or await oc.served_model(args.endpoint)
    except (OSError, ValueError, asyncio.TimeoutError) as e:
        print(f"load_gen: cannot reach the server at {args.endpoint}: {e}", file=sys.stderr)
        return 1
    return await open_loop(openai_target(model, args), args)


async def main_async(args) -> int:
    if args.openai:
        return await openai_main(args)
    router_pb2, router_pb2_grpc = lc.load_stubs()
    n_streams = (args.concurrency or 0) + args.never_read
    n_channels = args.channels or max(1, math.ceil(n_streams / STREAMS_PER_CHANNEL))
    channels = lc.make_channels(args.router, n_channels)
    rc = 1
    try:
        try:
            await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 10) for c in channels))
        except asyncio.TimeoutError:
            print(f"load_gen: cannot reach the router at {args.router}", file=sys.stderr)
            return rc
        if args.open_loop:
            rc = await open_loop(grpc_target(router_pb2_grpc.RouterStub(channels[0]), router_pb2,
                                             args), args)
        else:
            rc = await closed_loop_and_unread(channels, router_pb2, router_pb2_grpc, args)
        return rc
    finally:
        # The results are out. grpc.aio's teardown (channel close, event loop and interpreter
        # exit) has been seen to hang after hundreds of cancelled streams: it gets 30 s, then
        # the process exits with the run's status anyway.
        sys.stdout.flush()
        watchdog = threading.Timer(30, lambda: (sys.stderr.flush(), os._exit(rc)))
        watchdog.daemon = True
        watchdog.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(c.close() for c in channels)), 10)
        except asyncio.TimeoutError:
            print("load_gen: closing the channels timed out", file=sys.stderr)


def main(argv: list) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
