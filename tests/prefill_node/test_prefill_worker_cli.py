"""pdserve-prefill-worker as a process: flags, "listening on", health, reflection, registration
with a (fake, Python) router, one Prefill to a (fake) decode worker, SIGTERM → exit 0.

Messages are raw bytes (tests/python/proto_wire.py), so no generated Python code is needed."""
import sys
import time
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import pdserve_testlib as lib  # noqa: E402
from proto_wire import (HEALTH_SERVING, RAW, WORKER_ROLE_PREFILL, FakeWorkerRegistry,  # noqa: E402
                        field_bytes, field_varint, grpc_server, health_status, parse_fields,
                        reflected_services, varint)

WORKER = "prefill_node/pdserve-prefill-worker"


def gguf():
    return lib.shared_file("models/stories260K.gguf")


def start_worker(*extra, listen="127.0.0.1:0"):
    """The worker on stories260K, serving (its "listening on" line seen)."""
    return lib.ServerProcess(lib.binary(WORKER), "--model", gguf(), "--listen", listen, *extra)


def test_bad_flags_exit_2_with_a_message():
    worker = lib.binary(WORKER)
    for args, text in [(["--model", gguf(), "--listen", "nonsense"], "--listen"),
                       (["--model", gguf(), "--queue-capacity", "-1"], "--queue-capacity"),
                       (["--model", gguf(), "--advertise", "10.0.0.7"], "--advertise"),
                       (["--model", gguf(), "--metrics-port", "-1"], "--metrics-port"),
                       (["--listen", "127.0.0.1:0"], "--model"),
                       (["--model", gguf(), "--bogus"], "bogus")]:
        lib.assert_exit_status([worker, *args], 2, text)


def test_health_reflection_and_sigterm():
    with start_worker() as worker:
        assert health_status(worker.address) == HEALTH_SERVING
        assert "pdserve.v1.PrefillWorker" in reflected_services(worker.address)
        start = time.monotonic()
        assert worker.stop() == 0, worker.log()
        assert time.monotonic() - start < 5


def test_metrics_port_serves_the_queue_gauges():
    with start_worker("--metrics-port", "0") as worker:
        text = lib.scrape_metrics(worker)
        assert "pdserve_prefill_requests_queued 0\n" in text, text
        assert 'pdserve_prefill_requests_total{outcome="succeeded"} 0\n' in text, text


def test_registers_and_serves_a_prefill():
    registry, chunks = FakeWorkerRegistry(), []

    def push_kv(request_iterator, context):
        n = 0
        for chunk in request_iterator:
            fields = parse_fields(chunk)
            chunks.append(fields)
            n += len(fields.get(4, []))
        return field_varint(1, n)

    services = dict(registry.services(), **{"pdserve.v1.KvReceiver": {
        "PushKv": grpc.stream_unary_rpc_method_handler(push_kv)}})
    with grpc_server(services) as fake, start_worker(
            "--router", fake, "--worker-id", "pf-1", "--advertise", "10.0.0.7:5000",
            "--metrics-port", "0") as worker:
        assert registry.wait_for_heartbeats(2), worker.log()
        reg = registry.registrations[0]
        assert reg[1] == [b"pf-1"]
        assert reg[2] == [WORKER_ROLE_PREFILL]
        assert reg[3] == [b"10.0.0.7:5000"]
        layout = parse_fields(reg[5][0])
        assert layout[5] == [16]  # block_size
        assert reg[6] == [b"stories260K.gguf"]
        load = parse_fields(registry.heartbeats[-1][2][0])
        assert load[4][0] > 0  # total_kv_blocks
        assert load[3] == load[4]  # all free while idle

        prompt = [1 + (i * 37) % 500 for i in range(150)]
        # KvHandoff: the token, 10 target blocks, the worker's own layout, the grpc transport.
        token = bytes(range(16))
        handoff = (field_bytes(1, token)
                   + field_bytes(2, b"".join(varint(100 + b) for b in range(10)))
                   + field_bytes(3, reg[5][0])
                   + field_bytes(4, field_bytes(1, b"grpc")))
        request = (field_bytes(1, b"req-1")
                   + field_bytes(2, b"".join(varint(t) for t in prompt))
                   + field_bytes(4, fake.encode())
                   + field_bytes(5, handoff))
        with grpc.insecure_channel(worker.address) as channel:
            prefill = channel.unary_unary("/pdserve.v1.PrefillWorker/Prefill", **RAW)
            response = parse_fields(prefill(request, timeout=30))
            assert response[4] == [10]  # kv_blocks_sent
            assert len(chunks) == 4  # 3 of blocks, then the last with the first token
            assert chunks[0][1] == [b"req-1"]
            assert chunks[0][7] == [token]  # transfer_token
            assert chunks[-1][5] == [1]  # last
            assert 4 not in chunks[-1]  # no blocks in the last chunk
            assert response.get(1, [0]) == chunks[-1].get(6, [0])  # first token

            bad = field_bytes(1, b"req-2") + field_bytes(4, fake.encode()) + field_bytes(5, handoff)
            with pytest.raises(grpc.RpcError) as error:
                prefill(bad, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "prompt is empty" in error.value.details()
        text = lib.scrape_metrics(worker)  # the service recorded both calls
        assert 'pdserve_prefill_requests_total{outcome="succeeded"} 1\n' in text, text
        assert 'pdserve_prefill_requests_total{outcome="failed"} 1\n' in text, text
        assert "pdserve_prefill_prompt_tokens_total 150\n" in text, text
        assert worker.stop() == 0, worker.log()
