"""Encodes and decodes a few protobuf fields by hand, so tests need no generated Python code.

The worker CLI tests talk to our binaries over gRPC with messages as raw bytes: they build a
request from the field numbers in proto/*.proto and read the fields they check from the answer.
That keeps them free of protoc and of a generated module that could drift from the C++ one.
FakeWorkerRegistry is the router's WorkerRegistry service on such bytes, for a worker to register
with.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent import futures

# Pass to channel.unary_unary(...) and friends: messages go over the channel as bytes.
RAW = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)

# proto/router.proto: WorkerRole.
WORKER_ROLE_PREFILL = 1
WORKER_ROLE_DECODE = 2


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field: string, bytes, a sub-message or a packed repeated field."""
    return varint((number << 3) | 2) + varint(len(data)) + data


def field_varint(number: int, value: int) -> bytes:
    """An int32/int64/uint/bool/enum field (non-negative values)."""
    return varint(number << 3) + varint(value)


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    """(value, index after it) of the varint at data[i]."""
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def parse_fields(data: bytes) -> dict:
    """Top-level fields of a message: {number: [value (int or bytes), ...]}. Sub-messages stay
    bytes (parse them again); fixed32/fixed64 values are their raw little-endian bytes."""
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


@contextlib.contextmanager
def grpc_server(services: dict):
    """A gRPC server on 127.0.0.1 (a free port) for {service: {method: handler}}, with handlers
    made by grpc.*_rpc_method_handler on raw bytes; yields its address, stops it on exit."""
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(name, methods)
                                     for name, methods in services.items()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


class FakeWorkerRegistry:
    """pdserve.v1.WorkerRegistry (proto/worker.proto) as the router serves it: answers every
    RegisterWorker with heartbeat_interval_ms and every Heartbeat with registered = true, and
    keeps each request, parsed, in .registrations / .heartbeats."""

    def __init__(self, heartbeat_interval_ms: int = 50):
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.registrations: list[dict] = []
        self.heartbeats: list[dict] = []
        self._arrived = threading.Condition()

    def services(self) -> dict:
        """For grpc_server(); merge it with other services the test needs."""
        import grpc

        return {"pdserve.v1.WorkerRegistry": {
            "RegisterWorker": grpc.unary_unary_rpc_method_handler(self._register),
            "Heartbeat": grpc.unary_unary_rpc_method_handler(self._heartbeat)}}

    def _register(self, request, context):
        with self._arrived:
            self.registrations.append(parse_fields(request))
            self._arrived.notify_all()
        return field_varint(1, self.heartbeat_interval_ms)

    def _heartbeat(self, request, context):
        with self._arrived:
            self.heartbeats.append(parse_fields(request))
            self._arrived.notify_all()
        return field_varint(1, 1)

    def wait_for_heartbeats(self, n: int, timeout_s: float = 20.0) -> bool:
        """True once a registration and n heartbeats have arrived; False after timeout_s."""
        with self._arrived:
            return self._arrived.wait_for(
                lambda: bool(self.registrations) and len(self.heartbeats) >= n, timeout=timeout_s)


# ---- the standard services every pdserve server has -----------------------------------------

HEALTH_SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus


def health_status(address: str, timeout_s: float = 10.0) -> int:
    """grpc.health.v1 Health/Check for the whole server (service ""): the status number."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check", **RAW)
        return parse_fields(check(b"", timeout=timeout_s)).get(1, [0])[0]


def reflected_services(address: str, timeout_s: float = 10.0) -> list[str]:
    """The service names server reflection lists (ServerReflectionInfo with list_services)."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        reflect = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", **RAW)
        answers = list(reflect(iter([field_bytes(7, b"")]), timeout=timeout_s))
    names = []
    for answer in answers:  # ServerReflectionResponse.list_services_response = 6
        for listing in parse_fields(answer).get(6, []):
            for service in parse_fields(listing).get(1, []):  # ListServiceResponse.service
                names.append(parse_fields(service)[1][0].decode())  # ServiceResponse.name
    return names
