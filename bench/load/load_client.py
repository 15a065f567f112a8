"""What bench/load/load_gen.py sends to a router over gRPC and how it times it: the gRPC stubs
(compiled from proto/ at run time), one timed Generate request over grpc.aio and a Generate stream
that is opened and never read (the Result is load_results.py's, the prompts load_workload.py's).
Every request uses ignore_eos, so its output is exactly its drawn length.
"""

from __future__ import annotations

import atexit
import importlib
import pathlib
import random
import shutil
import sys
import tempfile
import time

import grpc
import grpc.aio

from load_results import INCOMPLETE, Result
from load_workload import random_prompt

ROOT = pathlib.Path(__file__).resolve().parents[2]


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


def random_request(router_pb2, rng: random.Random, prompt_tokens: tuple, output_tokens: tuple):
    """A GenerateRequest with a prompt of [lo, hi] words and an output of [lo, hi] tokens."""
    prompt, max_tokens = random_prompt(rng, prompt_tokens, output_tokens)
    return router_pb2.GenerateRequest(text=prompt, max_tokens=max_tokens, ignore_eos=True)


async def timed_request(stub, request, timeout_s: float) -> Result:
    """Sends one Generate request, reads its stream to the end and times it."""
    start = time.monotonic()
    first = last = None
    itl = []
    final = None
    try:
        async for response in stub.Generate(request, timeout=timeout_s):
            if response.HasField("chunk"):
                if response.chunk.token_ids:
                    now = time.monotonic()
                    if first is None:
                        first = now
                    else:
                        itl.append(now - last)
                    last = now
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
                  prompt_tokens=final.usage.prompt_tokens, completion_tokens=n, end=end, itl=itl,
                  n_chunks=len(itl) + 1)


async def open_unread_stream(stub, request):
    """Starts a Generate call and returns it once the request has been sent; nobody reads its
    responses, so the router sees a client that never consumes its stream. The caller cancels it."""
    call = stub.Generate(request)
    await call.wait_for_connection()
    return call

