"""A real pdserve-router refuses real workers that cannot share KV blocks with the cluster: one
running another model (the llama2.c file of the same model is another fingerprint), one with
another KV block size than the workers already registered. Each exits 1 at once, printing the
router's message (both sides named) instead of retrying; the router logs the refusal."""
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import pdserve_testlib as lib  # noqa: E402

ROUTER = "router/pdserve-router"
PREFILL = "prefill_node/pdserve-prefill-worker"
DECODE = "decode_node/pdserve-decode-worker"


def gguf():
    return lib.shared_file("models/stories260K.gguf")


def start_router():
    return lib.ServerProcess(lib.binary(ROUTER), "--model", gguf(), "--listen", "127.0.0.1:0")


def wait_for_line(server, text, timeout_s=30.0):
    """True once `text` is in a line of server's stderr."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if text in server.log():
            return True
        time.sleep(0.05)
    return False


def run_refused(args, timeout_s=60.0):
    """Runs a worker that must exit on its own (not by a signal); returns its result."""
    args = [str(a) for a in args]
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"still running after {timeout_s} s (the refusal was retried?): "
                             f"{' '.join(args)}\nstderr: {e.stderr}") from None


def test_a_worker_with_another_model_exits_1_naming_both_models():
    with start_router() as router:
        result = run_refused([
            lib.binary(PREFILL), "--model", lib.shared_file("models/stories260K.bin"),
            "--tokenizer", lib.shared_file("models/tok512.bin"), "--listen", "127.0.0.1:0",
            "--router", router.address, "--worker-id", "prefill-bin"])
        assert result.returncode == 1, result.stderr
        line = next((l for l in result.stderr.splitlines()
                     if l.startswith("pdserve-prefill-worker: the router at")), "")
        assert "refused this worker" in line, result.stderr
        assert "model fingerprint" in line, result.stderr
        assert "(stories260K.bin)" in line and "(stories260K.gguf)" in line, result.stderr
        assert "registered with the router" not in result.stderr, result.stderr
        assert wait_for_line(router, "refused the registration of worker prefill-bin"), \
            router.log()
        assert router.stop() == 0, router.log()


def test_a_worker_with_another_block_size_than_the_registered_ones_exits_1():
    with start_router() as router, lib.ServerProcess(
            lib.binary(DECODE), "--model", gguf(), "--listen", "127.0.0.1:0",
            "--router", router.address, "--worker-id", "decode-16") as first:
        assert wait_for_line(first, "registered with the router"), first.log()
        result = run_refused([
            lib.binary(PREFILL), "--model", gguf(), "--kv-block-size", "32",
            "--listen", "127.0.0.1:0", "--router", router.address, "--worker-id", "prefill-32"])
        assert result.returncode == 1, result.stderr
        line = next((l for l in result.stderr.splitlines()
                     if l.startswith("pdserve-prefill-worker: the router at")), "")
        assert "worker prefill-32 has KV layout" in line, result.stderr
        assert "block_size=32" in line, result.stderr
        assert "registered worker decode-16 has" in line and "block_size=16" in line, \
            result.stderr
        assert wait_for_line(router, "refused the registration of worker prefill-32"), \
            router.log()
        # The first worker is untouched by the refusal.
        assert first.proc.poll() is None, first.log()
        assert first.stop() == 0, first.log()
        assert router.stop() == 0, router.log()
