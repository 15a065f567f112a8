"""A stand-in pdserve router for testing pdserve-client and deploy/launch.sh without the real
binaries: the same Router service on --listen HOST:PORT, with canned answers.

- Generate streams one chunk that describes the request it received (so a test can check how the
  client mapped its flags), then a second chunk " done", then the final message. max_tokens < 1
  or an empty prompt → INVALID_ARGUMENT with a message, as the real router answers.
- ListWorkers lists $PDSERVE_FAKE_WORKERS healthy workers (default 2), once
  $PDSERVE_FAKE_HEALTHY_AFTER_S seconds (default 0) have passed since start.
- SIGTERM/SIGINT → stop the server and exit 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_lib  # noqa: E402

import grpc  # noqa: E402

router_pb2, router_pb2_grpc, common_pb2 = cluster_lib.stubs()


def describe(request) -> str:
    if request.WhichOneof("prompt") == "chat":
        prompt = "chat=" + "|".join(f"{m.role}:{m.content}" for m in request.chat.messages)
    else:
        prompt = f"text={request.text}"
    s = request.sampling
    fields = [f"{name}={getattr(s, name)}" for name in
              ("temperature", "top_k", "top_p", "repetition_penalty", "seed") if s.HasField(name)]
    return (f"{prompt};max_tokens={request.max_tokens};sampling={','.join(fields)};"
            f"stop={','.join(request.stop)};ignore_eos={request.ignore_eos};"
            f"request_id={request.request_id}")


class FakeRouter(router_pb2_grpc.RouterServicer):
    def __init__(self, n_workers: int, healthy_after_s: float):
        self.start = time.monotonic()
        self.n_workers = n_workers
        self.healthy_after_s = healthy_after_s
        self.received = 0

    def Generate(self, request, context):
        self.received += 1
        if request.max_tokens < 1:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"max_tokens must be >= 1, got {request.max_tokens}")
        if request.WhichOneof("prompt") is None or (
                request.WhichOneof("prompt") == "text" and not request.text):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the prompt is empty")
        yield router_pb2.GenerateResponse(
            chunk=router_pb2.TextChunk(text=describe(request), token_ids=[5, 6]))
        yield router_pb2.GenerateResponse(chunk=router_pb2.TextChunk(text=" done", token_ids=[7]))
        yield router_pb2.GenerateResponse(final=router_pb2.GenerateFinal(
            finish_reason="length", usage=router_pb2.Usage(prompt_tokens=4, completion_tokens=3),
            timing=router_pb2.RequestTiming(queue_seconds=0.001, ttft_seconds=0.0125,
                                            tpot_seconds=0.0025, e2e_seconds=0.0175),
            request_id=request.request_id or "fake-1", prefill_worker="prefill-0",
            decode_worker="decode-0"))

    def ListWorkers(self, request, context):
        healthy = time.monotonic() - self.start >= self.healthy_after_s
        workers = []
        for i in range(self.n_workers):
            role = router_pb2.WORKER_ROLE_PREFILL if i % 2 == 0 else router_pb2.WORKER_ROLE_DECODE
            workers.append(router_pb2.WorkerInfo(
                worker_id=f"fake-{i}", role=role, address=f"127.0.0.1:{10000 + i}",
                healthy=healthy, seconds_since_heartbeat=0.25,
                load=common_pb2.WorkerLoad(queue_length=1, active_sequences=2, free_kv_blocks=30,
                                           total_kv_blocks=32)))
        return router_pb2.ListWorkersResponse(workers=workers)

    def GetStats(self, request, context):
        summary = router_pb2.LatencySummary(count=self.received, mean=0.02, p50=0.01, p90=0.03,
                                            p99=0.05)
        return router_pb2.GetStatsResponse(cluster=router_pb2.ClusterStats(
            requests=router_pb2.RequestCounts(received=self.received, succeeded=self.received),
            ttft_seconds=summary, tpot_seconds=summary, completion_tokens=3 * self.received,
            uptime_seconds=time.monotonic() - self.start))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    args, _ = parser.parse_known_args()  # the real router's other flags are accepted and ignored
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    router_pb2_grpc.add_RouterServicer_to_server(FakeRouter(
        int(os.environ.get("PDSERVE_FAKE_WORKERS", "2")),
        float(os.environ.get("PDSERVE_FAKE_HEALTHY_AFTER_S", "0"))), server)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        print(f"cannot listen on {args.listen}", file=sys.stderr)
        return 1
    server.start()
    print(f"listening on {args.listen.rsplit(':', 1)[0]}:{port}", file=sys.stderr, flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.2):
        pass
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
