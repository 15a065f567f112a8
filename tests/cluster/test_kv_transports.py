"""The stories260K 2 prefill + 2 decode cluster gives the golden tokens whichever transport moves
the KV (kv_transport=grpc or tcp; shm, the default on one host, is test_tiny_cluster.py), and
the router's GetStats shows that transport for every worker pair."""

from __future__ import annotations

import pathlib
import sys
import time

import grpc
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

router_pb2, router_pb2_grpc, common_pb2 = lib.stubs()


model = lib.stories_model
goldens = lib.stories_goldens


@pytest.mark.parametrize("transport", ["grpc", "tcp"])
def test_golden_tokens_over_each_transport(tmp_path, transport):
    lib.require_cluster_binaries()
    config, router = lib.write_config(tmp_path, f"tiny-{transport}", model(), 2, 2,
                                      {"kv_transport": transport})
    with lib.cluster(config, tmp_path / "run"), grpc.insecure_channel(router) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        for golden in goldens()[:4]:
            n = min(golden["max_new_tokens"], 120)
            ids = []
            for response in stub.Generate(router_pb2.GenerateRequest(
                    text=golden["prompt"], max_tokens=n), timeout=60):
                if response.HasField("chunk"):
                    ids.extend(response.chunk.token_ids)
            assert ids == golden["output_ids"][:n], golden["prompt"]
        stats = stub.GetStats(router_pb2.GetStatsRequest(), timeout=10)
        assert stats.kv_transfers, stats
        assert {t.transport for t in stats.kv_transfers} == {transport}
        assert sum(t.count for t in stats.kv_transfers) == 4
        # Every block the requests reserved is back (heartbeats carry the counts).
        deadline = time.monotonic() + 15
        while True:
            workers = stub.ListWorkers(router_pb2.ListWorkersRequest(), timeout=10).workers
            decode = [w for w in workers if w.role == router_pb2.WORKER_ROLE_DECODE]
            if all(w.load.free_kv_blocks == w.load.total_kv_blocks > 0 for w in decode):
                break
            assert time.monotonic() < deadline, [(w.worker_id, w.load) for w in decode]
            time.sleep(0.2)
