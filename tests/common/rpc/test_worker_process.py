"""What both worker binaries do alike, since they share its code (common/rpc/server_process,
WaitForShutdownWhileRegistering, cli/worker_flags): the address they give the router, a
prompt exit on SIGTERM while the router is not up yet, and --metrics-port over HTTPS when the
worker has TLS.

Messages are raw bytes (tests/python/proto_wire.py), so no generated Python code is needed."""
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
import pdserve_testlib as lib  # noqa: E402
from proto_wire import FakeWorkerRegistry, grpc_server  # noqa: E402

WORKERS = ["prefill_node/pdserve-prefill-worker", "decode_node/pdserve-decode-worker"]


def start_worker(worker, *extra, listen="127.0.0.1:0"):
    """The worker on stories260K, serving (its "listening on" line seen)."""
    return lib.ServerProcess(lib.binary(worker), "--model",
                             lib.shared_file("models/stories260K.gguf"), "--listen", listen,
                             *extra)


@pytest.mark.parametrize("worker", WORKERS)
def test_a_wildcard_listen_address_is_advertised_as_loopback(worker):
    """0.0.0.0 is no address to connect to: with no --advertise the router must get
    127.0.0.1:<the bound port>."""
    registry = FakeWorkerRegistry()
    with grpc_server(registry.services()) as fake, start_worker(
            worker, "--router", fake, listen="0.0.0.0:0") as process:
        assert registry.wait_for_heartbeats(1), process.log()
        port = process.address.rsplit(":", 1)[1]
        assert registry.registrations[0][3] == [f"127.0.0.1:{port}".encode()]
        deadline = time.monotonic() + 10
        while "registered with the router at" not in process.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"registered with the router at {fake}" in process.log()
        assert process.stop() == 0, process.log()


@pytest.mark.parametrize("worker", WORKERS)
def test_sigterm_while_the_router_is_not_up_exits_0_promptly(worker):
    # A port nothing listens on: registration keeps retrying until the signal.
    with start_worker(worker, "--router", f"127.0.0.1:{lib.free_ports(1)[0]}") as process:
        time.sleep(0.5)
        start = time.monotonic()
        assert process.stop() == 0, process.log()
        assert time.monotonic() - start < 5


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    lib.run_binary(["bash", Path(__file__).resolve().parent / "make_test_certs.sh", out],
                   timeout_s=60)
    return out


@pytest.mark.parametrize("worker", WORKERS)
def test_metrics_of_a_tls_worker_are_https(worker, certs):
    with start_worker(worker, "--tls-cert", certs / "node.pem", "--tls-key", certs / "node.key",
                      "--tls-ca", certs / "ca.pem", "--metrics-port", "0") as process:
        lines = [l for l in process.stderr_lines if l.startswith("metrics on ")]
        assert lines, process.log()
        address = lines[0].split()[2]
        trusted = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with urllib.request.urlopen(f"https://{address}/metrics", timeout=10,
                                    context=trusted) as response:
            assert "# TYPE pdserve_" in response.read().decode()
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read()
        assert process.stop() == 0, process.log()
