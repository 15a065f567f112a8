"""pdserve-decode-worker as a process: flags, "listening on", health, reflection, registration
and heartbeats with a (fake, Python) router, the address it advertises, SIGTERM → exit 0.

Messages are raw bytes (tests/python/proto_wire.py), so no generated Python code is needed."""
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import pdserve_testlib as lib  # noqa: E402
from proto_wire import (HEALTH_SERVING, WORKER_ROLE_DECODE, FakeWorkerRegistry,  # noqa: E402
                        grpc_server, health_status, parse_fields, reflected_services)

WORKER = "decode_node/pdserve-decode-worker"


def gguf():
    return lib.shared_file("models/stories260K.gguf")


def start_worker(*extra, listen="127.0.0.1:0"):
    """The worker on stories260K, serving (its "listening on" line seen)."""
    return lib.ServerProcess(lib.binary(WORKER), "--model", gguf(), "--listen", listen, *extra)


@pytest.mark.parametrize("flags, message", [
    (["--max-batch", "0"], "--max-batch"),
    (["--max-batch", "lots"], "max-batch"),
    (["--kv-pool-tokens", "0"], "--kv-pool-tokens"),
    (["--kv-lease-idle-ms", "0"], "--kv-lease-idle-ms"),
    (["--kv-lease-max-ms", "-5"], "--kv-lease-max-ms"),
    (["--kv-transport", "carrier-pigeon"], "unknown KV transport"),
    (["--kv-timeout-ms", "1000"], "kv-timeout-ms"),  # replaced by the two lease flags
    (["--listen", "nonsense"], "--listen"),
    (["--advertise", "10.0.0.7"], "--advertise"),  # no port: nobody could connect to it
    (["--metrics-port", "70000"], "--metrics-port"),
    (["--bogus"], "bogus"),
])
def test_bad_flags_exit_2_with_a_message(flags, message):
    lib.assert_exit_status([lib.binary(WORKER), "--model", gguf(), *flags], 2, message)


def test_model_is_required():
    lib.assert_exit_status([lib.binary(WORKER), "--listen", "127.0.0.1:0"], 2, "--model")


def test_help_lists_the_flags():
    result = lib.run_binary([lib.binary(WORKER), "--help"])
    for flag in ("--model", "--listen", "--router", "--worker-id", "--advertise",
                 "--kv-pool-tokens", "--max-batch", "--kv-lease-idle-ms", "--kv-lease-max-ms",
                 "--kv-transport"):
        assert flag in result.stdout, result.stdout


def test_health_reflection_and_sigterm():
    with start_worker() as worker:
        assert health_status(worker.address) == HEALTH_SERVING
        services = reflected_services(worker.address)
        assert "pdserve.v1.DecodeWorker" in services, services
        assert "pdserve.v1.KvReceiver" in services, services
        start = time.monotonic()
        assert worker.stop() == 0, worker.log()
        assert time.monotonic() - start < 5


def test_metrics_port_serves_the_pool_gauges():
    with start_worker("--metrics-port", "0", "--kv-pool-tokens", "1024") as worker:
        text = lib.scrape_metrics(worker)
        assert "pdserve_kv_blocks_total 64\n" in text, text  # 1024 tokens / 16 per block
        assert "pdserve_kv_blocks_free 64\n" in text, text
        assert "# TYPE pdserve_decode_step_seconds histogram" in text, text


def test_registers_as_decode_and_heartbeats():
    registry = FakeWorkerRegistry()
    with grpc_server(registry.services()) as fake, start_worker(
            "--router", fake, "--worker-id", "dec-1", "--advertise", "10.0.0.7:5001",
            "--kv-pool-tokens", "1024") as worker:
        assert registry.wait_for_heartbeats(2), worker.log()
        reg = registry.registrations[0]
        assert reg[1] == [b"dec-1"]
        assert reg[2] == [WORKER_ROLE_DECODE]
        assert reg[3] == [b"10.0.0.7:5001"]
        layout = parse_fields(reg[5][0])  # KvLayoutInfo: what prefill workers must send
        assert layout[2][0] > 0 and layout[3][0] > 0 and layout[4][0] > 0  # layers, heads, dim
        assert layout[5] == [16]  # block_size
        assert layout[6] == [b"f32"]
        assert reg[6] == [b"stories260K.gguf"]
        beat = registry.heartbeats[-1]
        assert beat[1] == [b"dec-1"]
        load = parse_fields(beat[2][0])
        assert load[4] == [1024 // 16]  # total_kv_blocks from --kv-pool-tokens
        assert load[3] == load[4]  # all free while idle
        assert worker.stop() == 0, worker.log()
