"""kill -9 of a worker in the middle of a KV transfer, for each transport (grpc, shm, tcp) and
each victim (the prefill worker, the decode worker): docs/kv-transfer.md, "What each failure
does".

Each case launches its own SmolLM2 1 prefill + 1 decode cluster (deploy/launch.sh, fresh pools)
with a short KV lease (--kv-lease-idle-ms 3000), sends a ~1,400-token prompt (its prefill takes
seconds on a small machine, and its KV is shipped chunk by chunk while the next chunk computes),
and kills the victim with SIGKILL once KV is observably landing on the decode worker: at least
KV_LANDED_BYTES more than before the request, measured on the decode process itself (shm: the
pool's shared memory it has touched, RssShmem; grpc and tcp: what its TCP sockets received,
`ss`), with the request still in flight. Then:

- the client gets UNAVAILABLE or ABORTED, with a message that names the victim (its role, id or
  address);
- the survivor is still running and gives back every block of the request: its free_kv_blocks
  in ListWorkers return to their value before the request within the lease (idle) plus two
  heartbeats (the docs promise "at once" for a broken stream or socket; the lease is the
  bound);
- the next request succeeds and equals pdserve-generate's answer. With the only worker of the
  victim's role dead, a live one is needed: the test restarts the killed worker by hand with
  the exact command line launch.sh logged (the first line of its log), waits for it to
  register, and sends the request. A restart was chosen over a 2 + 2 cluster because it is
  deterministic: with two of each, which worker the long request lands on and when the router
  drops a dead worker (heartbeat timeout) would decide the outcome. The restarted worker
  replaces the victim's line in the run dir's pid file, so launch.sh --stop stops it.

A decode worker killed with SIGKILL cannot unlink its shm pool (/dev/shm/pdserve-kv-<pid>-...,
180 MiB here); the test removes that dead worker's object itself so that no run leaves it behind.
About 25 s in all on 2 cores (a case: launch, ~1 s of prefill, the kill, restart, one request).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

router_pb2, router_pb2_grpc, common_pb2 = lib.stubs()

LEASE_IDLE_S = 3.0
HEARTBEAT_S = 1.0  # the router's default --heartbeat-interval-ms
# The 1,426-token prompt's KV is 66 MB (f32, 46,080 bytes a token); 8 MiB is about three of
# its 24 chunks: the transfer has begun and is far from done.
KV_LANDED_BYTES = 8 << 20
PARAGRAPH = ("The quick brown fox jumps over the lazy dog while the farmer watches from the old "
             "wooden fence. ")
LONG_PROMPT = PARAGRAPH * 75  # 1,426 SmolLM2 tokens
NEXT_PROMPT, NEXT_TOKENS = "The capital of France is", 8


class InFlightGenerate:
    """One Generate call on a thread: .done is set when it ends; then .error (a grpc.RpcError)
    or .final (the final message)."""

    def __init__(self, router: str, timeout_s: float, **fields):
        self.done = threading.Event()
        self.error: grpc.RpcError | None = None
        self.final = None
        self._channel = grpc.insecure_channel(router)
        self._request = router_pb2.GenerateRequest(**fields)
        self._timeout_s = timeout_s
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            stub = router_pb2_grpc.RouterStub(self._channel)
            for response in stub.Generate(self._request, timeout=self._timeout_s):
                if response.HasField("final"):
                    self.final = response.final
        except grpc.RpcError as e:
            self.error = e
        finally:
            self._channel.close()
            self.done.set()


def kv_landed_on_decode(decode_pid: int, transport: str) -> int:
    """Bytes of KV observably landed on the decode worker so far (plus a small baseline)."""
    if transport == "shm":
        return lib.rss_shmem_bytes(decode_pid)
    return lib.tcp_bytes_received(decode_pid)


def log_tails(run_dir: pathlib.Path) -> str:
    return "".join(f"\n---- {f.name} ----\n" + "".join(f.read_text().splitlines(True)[-15:])
                   for f in sorted(run_dir.glob("*.log")))


def remove_shm_pool_of(pid: int | None) -> None:
    """Unlinks the KV pool object a SIGKILLed decode worker (pid) left in /dev/shm (its name
    carries the creator's pid: /pdserve-kv-<pid>-<hex>), so that no run leaves 180 MiB of
    /dev/shm behind. Only that dead worker's objects are touched."""
    if pid is None or lib.alive(pid):
        return
    for path in pathlib.Path("/dev/shm").glob(f"pdserve-kv-{pid}-*"):
        path.unlink(missing_ok=True)


def worker_address(router: str, worker_id: str) -> str:
    with grpc.insecure_channel(router) as channel:
        workers = router_pb2_grpc.RouterStub(channel).ListWorkers(
            router_pb2.ListWorkersRequest(), timeout=10).workers
    return next(w.address for w in workers if w.worker_id == worker_id)


def registrations(run_dir: pathlib.Path, name: str) -> int:
    return (run_dir / f"{name}.log").read_text().count("registered with the router")


@pytest.fixture(scope="module")
def model() -> pathlib.Path:
    lib.require_cluster_binaries()
    return lib.run_fetch_model()


@pytest.fixture(scope="module")
def next_reference(model) -> str:
    return lib.generate_reference(model, NEXT_PROMPT, NEXT_TOKENS, timeout_s=300)


@pytest.mark.parametrize("victim", ["prefill", "decode"])
@pytest.mark.parametrize("transport", ["grpc", "shm", "tcp"])
def test_kill_9_mid_transfer_frees_blocks_fails_the_request_and_serves_the_next(
        tmp_path, model, next_reference, transport, victim):
    survivor = "decode" if victim == "prefill" else "prefill"
    victim_id, survivor_id = f"{victim}-0", f"{survivor}-0"
    config, router = lib.write_config(tmp_path, f"kill-{victim}-{transport}", model, 1, 1, {
        "kv_transport": transport,
        "decode_flags": f"--kv-lease-idle-ms {int(LEASE_IDLE_S * 1000)}"})
    run_dir = tmp_path / "run"
    restarted, pids_at_start = [], {}

    def survivor_free_blocks() -> int:
        return lib.worker_loads(router)[survivor_id].free_kv_blocks

    try:
        with lib.cluster(config, run_dir) as pids:
            pids_at_start.update(pids)
            start = lib.worker_loads(router)[survivor_id]
            assert start.free_kv_blocks == start.total_kv_blocks > 0, start
            victim_address = worker_address(router, victim_id)
            decode_pid = pids["decode-0"]
            landed_before = kv_landed_on_decode(decode_pid, transport)

            call = InFlightGenerate(router, 300, text=LONG_PROMPT, max_tokens=4)
            landed = lib.wait_until(lambda: call.done.is_set() or kv_landed_on_decode(
                decode_pid, transport) - landed_before >= KV_LANDED_BYTES, 120)
            assert landed and not call.done.is_set(), (
                f"the request ended (error {call.error}) or no KV landed on decode-0 within "
                f"120 s: {log_tails(run_dir)}")
            # The router has seen the survivor's blocks taken (else "back to the start" below
            # would prove nothing).
            taken = lib.wait_until(lambda: survivor_free_blocks() < start.free_kv_blocks,
                                   2 * HEARTBEAT_S + 1)
            assert taken and not call.done.is_set(), (
                f"{survivor_id}'s free KV blocks never dropped below {start.free_kv_blocks} "
                f"while the request ran (error {call.error}): {log_tails(run_dir)}")
            landed_bytes = kv_landed_on_decode(decode_pid, transport) - landed_before
            os.kill(pids[victim_id], signal.SIGKILL)
            killed_at = time.monotonic()
            print(f"killed {victim_id} with {landed_bytes} bytes of KV landed on decode-0")

            # The client: UNAVAILABLE or ABORTED, with a message naming the victim.
            assert call.done.wait(60), f"the request hangs after {victim_id} died"
            assert call.error is not None, f"the request succeeded: {call.final}"
            code, details = call.error.code(), call.error.details() or ""
            print(f"client: {code} {details!r}, {time.monotonic() - killed_at:.2f} s after "
                  f"the kill")
            assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED), (code, details)
            assert any(word in details for word in (victim, victim_id, victim_address)), (
                f"the message does not name the {victim} worker: {code} {details!r}")

            # The survivor lives and gives every block back within the lease.
            bound_s = LEASE_IDLE_S + 2 * HEARTBEAT_S
            freed = lib.wait_until(lambda: survivor_free_blocks() == start.free_kv_blocks,
                                   killed_at + bound_s - time.monotonic())
            seen = survivor_free_blocks()
            print(f"{survivor_id}: {seen} free KV blocks "
                  f"{time.monotonic() - killed_at:.2f} s after the kill")
            assert freed, (f"{survivor_id} has {seen} free KV blocks {bound_s} s after "
                           f"{victim_id} died, {start.free_kv_blocks} before the request:"
                           f"{log_tails(run_dir)}")
            assert lib.alive(pids[survivor_id]), f"{survivor_id} died: {log_tails(run_dir)}"

            # The victim again, by hand; then the next request succeeds, through the survivor.
            n_registered = registrations(run_dir, victim_id)
            restarted.append(lib.restart_process(run_dir, victim_id))
            assert lib.wait_until(lambda: registrations(run_dir, victim_id) > n_registered, 90), (
                f"the restarted {victim_id} did not register: {log_tails(run_dir)}")
            r = lib.client(router, ["--prompt", NEXT_PROMPT, "--max-tokens", NEXT_TOKENS],
                           timeout_s=120)
            assert r.returncode == 0, f"{r.stderr}{log_tails(run_dir)}"
            assert r.stdout == next_reference
            assert lib.read_pids(run_dir)[survivor_id] == pids[survivor_id]
            assert lib.alive(pids[survivor_id]), f"{survivor_id} died: {log_tails(run_dir)}"
            assert lib.wait_until(lambda: survivor_free_blocks() == start.free_kv_blocks,
                                  2 * HEARTBEAT_S + 1), "the next request's blocks stay taken"
    finally:
        if victim == "decode" and transport == "shm":
            remove_shm_pool_of(pids_at_start.get("decode-0"))
        for proc in restarted:  # launch.sh --stop (cluster()) has stopped it: reap it
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
