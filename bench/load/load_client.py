"""What bench/load/load_gen.py sends to a router and how it counts what comes back: the gRPC stubs
(compiled from proto/ at run time), one timed Generate request over grpc.aio, a Generate stream
that is opened and never read, and the summary of a set of results.

TTFT and TPOT are measured at the client, as ../shared/ANCHORS.md defines them: TTFT = send ->
first chunk with tokens, TPOT = (end - first chunk) / (completion tokens - 1). Every request uses
ignore_eos, so its output is exactly its drawn length. Prompts are words from a fixed list, one
word ~ one token.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import importlib
import math
import pathlib
import random
import shutil
import sys
import tempfile
import time

import grpc
import grpc.aio

ROOT = pathlib.Path(__file__).resolve().parents[2]

WORDS = ("the a little girl named Lily went to park and saw big red ball she was very happy "
         "her mom said play with friend dog cat tree sun day time one once upon there lived "
         "boy who liked run jump sing story about bird fly sky blue green house garden flower "
         "water river small kind old new good nice warm cold rain snow home friends together "
         "learned shared found made looked smiled wanted asked helped").split()

# The status a router answers with when it has no room for a request (refused, not failed).
REFUSED = grpc.StatusCode.RESOURCE_EXHAUSTED.name
# The "code" of a stream that ended with OK but without tokens or without its final message.
INCOMPLETE = "INCOMPLETE_STREAM"


def load_stubs():
    """(router_pb2, router_pb2_grpc), compiled from proto/*.proto into a temp dir removed at exit."""
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="pdserve_load_")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    proto = ROOT / "proto"
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    if protoc.main(["protoc", f"-I{proto}", f"-I{include}", f"--python_out={out}",
                    f"--grpc_python_out={out}",
                    *sorted(str(p) for p in proto.glob("*.proto"))]) != 0:
        sys.exit(f"load_gen: could not compile {proto}/*.proto")
    sys.path.insert(0, out)
    return importlib.import_module("router_pb2"), importlib.import_module("router_pb2_grpc")


def make_channels(router: str, n: int) -> list:
    """n channels to the router, each on its own TCP connection: a local subchannel pool keeps
    gRPC from sharing one connection (and its server's per-connection stream limit) among them."""
    return [grpc.aio.insecure_channel(router, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(n)]


@dataclasses.dataclass
class Result:
    code: str  # "OK" when served; else the gRPC status code's name, or INCOMPLETE
    ttft: float = 0.0  # seconds
    tpot: float = 0.0  # seconds
    prompt_tokens: int = 0
    completion_tokens: int = 0
    end: float = 0.0  # time.monotonic() when the stream ended
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "OK"


def random_request(router_pb2, rng: random.Random, prompt_tokens: tuple, output_tokens: tuple):
    """A GenerateRequest with a prompt of [lo, hi] words and an output of [lo, hi] tokens."""
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*prompt_tokens)))
    return router_pb2.GenerateRequest(text=prompt, max_tokens=rng.randint(*output_tokens),
                                      ignore_eos=True)


async def timed_request(stub, request, timeout_s: float) -> Result:
    """Sends one Generate request, reads its stream to the end and times it."""
    start = time.monotonic()
    first = None
    final = None
    try:
        async for response in stub.Generate(request, timeout=timeout_s):
            if response.HasField("chunk"):
                if first is None and response.chunk.token_ids:
                    first = time.monotonic()
            else:
                final = response.final
    except grpc.aio.AioRpcError as error:
        return Result(code=error.code().name, end=time.monotonic(),
                      error=f"{error.code().name}: {error.details()}")
    end = time.monotonic()
    if final is None or first is None:
        return Result(code=INCOMPLETE, end=end,
                      error="stream ended without tokens or without a final message")
    n = final.usage.completion_tokens
    return Result(code="OK", ttft=first - start, tpot=(end - first) / (n - 1) if n > 1 else 0.0,
                  prompt_tokens=final.usage.prompt_tokens, completion_tokens=n, end=end)


async def open_unread_stream(stub, request):
    """Starts a Generate call and returns it once the request has been sent; nobody reads its
    responses, so the router sees a client that never consumes its stream. The caller cancels it."""
    call = stub.Generate(request)
    await call.wait_for_connection()
    return call


def percentile(values: list, q: float) -> float:
    """Linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summarize(results: list, start: float) -> dict:
    """Counts and rates of results sent from time.monotonic() == start; latencies in ms, rates
    over the time from start to the last end. NaN where there is nothing to measure."""
    served = [r for r in results if r.ok]
    codes = collections.Counter(r.code for r in results if not r.ok)
    duration = max((r.end for r in results), default=start) - start
    per_s = (lambda count: count / duration) if duration > 0 else (lambda count: math.nan)
    return {
        "n": len(results), "served": len(served), "refused": codes.pop(REFUSED, 0),
        "failed": dict(sorted(codes.items())),
        "errors": {r.code: r.error for r in reversed(results) if not r.ok},  # one example a code
        "duration_s": duration,
        "ttft_ms": [percentile([r.ttft for r in served], q) * 1e3 for q in (50, 90, 99)],
        "tpot_ms": [percentile([r.tpot for r in served], q) * 1e3 for q in (50, 90, 99)],
        "req_s": per_s(len(served)),
        "tok_s": per_s(sum(r.completion_tokens for r in served)),
        "prompt_mean": (sum(r.prompt_tokens for r in served) / len(served)) if served else math.nan,
    }
