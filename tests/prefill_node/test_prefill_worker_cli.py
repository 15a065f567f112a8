"""pdserve-prefill-worker as a process: flags, "listening on", health, reflection, registration
with a (fake, Python) router, one Prefill to a (fake) decode worker, SIGTERM → exit 0.

Messages are encoded by hand (a few protobuf fields), so no generated Python code is needed."""
import os
import re
import signal
import subprocess
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

BUILD = Path(os.environ["PDSERVE_BUILD_DIR"])
SHARED = Path(os.environ["PDSERVE_SHARED_DIR"])
WORKER = BUILD / "prefill_node" / "pdserve-prefill-worker"
GGUF = SHARED / "models" / "stories260K.gguf"
RAW = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number, data):
    return varint((number << 3) | 2) + varint(len(data)) + data


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def read_varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def parse_fields(data):
    """Top-level fields of a message: {number: [value (int or bytes), ...]}."""
    fields, i = {}, 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(data, i)
        elif wire == 2:
            length, i = read_varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


class Worker:
    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [str(WORKER), "--model", str(GGUF), "--listen", "127.0.0.1:0", *map(str, extra)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr_lines = []
        self.address = None
        ready = threading.Event()

        def pump():
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace")
                self.stderr_lines.append(line)
                m = re.match(r"listening on (\S+)", line)
                if m:
                    self.address = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        assert ready.wait(60), "no 'listening on' line"
        assert self.address, "".join(self.stderr_lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def test_binary_exists():
    assert WORKER.exists(), f"missing {WORKER}"
    assert GGUF.exists(), f"missing {GGUF}"


def test_bad_flags_exit_2_with_a_message():
    for args, text in [(["--model", GGUF, "--listen", "nonsense"], "--listen"),
                       (["--model", GGUF, "--queue-capacity", "-1"], "--queue-capacity"),
                       (["--listen", "127.0.0.1:0"], "--model"),
                       (["--model", GGUF, "--bogus"], "bogus")]:
        result = subprocess.run([str(WORKER), *map(str, args)], capture_output=True, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        assert text in result.stderr.decode(), (args, result.stderr)


def test_health_reflection_and_sigterm():
    worker = Worker()
    try:
        with grpc.insecure_channel(worker.address) as channel:
            check = channel.unary_unary("/grpc.health.v1.Health/Check", **RAW)
            response = parse_fields(check(b"", timeout=10))
            assert response[1] == [1]  # SERVING
            reflect = channel.stream_stream(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", **RAW)
            answers = list(reflect(iter([field_bytes(7, b"")]), timeout=10))
            assert any(b"pdserve.v1.PrefillWorker" in a for a in answers), answers
    finally:
        assert worker.stop() == 0, "".join(worker.stderr_lines)


def test_registers_and_serves_a_prefill():
    registrations, heartbeats, chunks = [], [], []

    def register(request, context):
        registrations.append(parse_fields(request))
        return field_varint(1, 50)  # heartbeat_interval_ms

    def heartbeat(request, context):
        heartbeats.append(parse_fields(request))
        return field_varint(1, 1)  # registered

    def push_kv(request_iterator, context):
        n = 0
        for chunk in request_iterator:
            fields = parse_fields(chunk)
            chunks.append(fields)
            n += len(fields.get(4, []))
        return field_varint(1, n)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("pdserve.v1.WorkerRegistry", {
            "RegisterWorker": grpc.unary_unary_rpc_method_handler(register),
            "Heartbeat": grpc.unary_unary_rpc_method_handler(heartbeat)}),
        grpc.method_handlers_generic_handler("pdserve.v1.KvReceiver", {
            "PushKv": grpc.stream_unary_rpc_method_handler(push_kv)}),
    ])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake = f"127.0.0.1:{port}"
    worker = Worker("--router", fake, "--worker-id", "pf-1", "--advertise", "10.0.0.7:5000")
    try:
        deadline = time.time() + 20
        while time.time() < deadline and len(heartbeats) < 2:
            time.sleep(0.02)
        assert registrations, "".join(worker.stderr_lines)
        reg = registrations[0]
        assert reg[1] == [b"pf-1"]
        assert reg[2] == [1]  # WORKER_ROLE_PREFILL
        assert reg[3] == [b"10.0.0.7:5000"]
        layout = parse_fields(reg[5][0])
        assert layout[5] == [16]  # block_size
        assert reg[6] == [b"stories260K.gguf"]
        assert len(heartbeats) >= 2
        load = parse_fields(heartbeats[-1][2][0])
        assert load[4][0] > 0  # total_kv_blocks
        assert load[3] == load[4]  # all free while idle

        prompt = [1 + (i * 37) % 500 for i in range(150)]
        request = (field_bytes(1, b"req-1")
                   + field_bytes(2, b"".join(varint(t) for t in prompt))
                   + field_bytes(4, fake.encode()))
        with grpc.insecure_channel(worker.address) as channel:
            prefill = channel.unary_unary("/pdserve.v1.PrefillWorker/Prefill", **RAW)
            response = parse_fields(prefill(request, timeout=30))
            assert response[4] == [10]  # kv_blocks_sent
            assert len(chunks) == 3
            assert chunks[0][1] == [b"req-1"]
            assert chunks[-1][5] == [1]  # last
            assert response.get(1, [0]) == chunks[-1].get(6, [0])  # first token

            bad = field_bytes(1, b"req-2") + field_bytes(4, fake.encode())
            with pytest.raises(grpc.RpcError) as error:
                prefill(bad, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "prompt is empty" in error.value.details()
    finally:
        assert worker.stop() == 0, "".join(worker.stderr_lines)
        server.stop(0)


def test_sigterm_while_the_router_is_not_up_exits_0_promptly():
    # A port nothing listens on: registration keeps retrying.
    probe = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = probe.add_insecure_port("127.0.0.1:0")
    probe.start()
    probe.stop(0).wait()
    worker = Worker("--router", f"127.0.0.1:{port}")
    time.sleep(0.5)
    start = time.time()
    assert worker.stop() == 0, "".join(worker.stderr_lines)
    assert time.time() - start < 5
