"""Failover on launched clusters (docs/reliability.md): what the router does when a worker or the
router itself dies, checked the way an operator would see it.

- kill -9 of one of two decode workers while 8 chat streams run (SmolLM2, greedy, 120 tokens
  each, the kill 2 s in): every stream completes OK with the same text as an undisturbed run of
  the same 8, no token repeated or lost; requests sent right after the kill all succeed.
- kill -9 of one of two prefill workers while 4 long prompts are being prefilled: all 4
  complete, through the other worker, and the decode worker's free blocks return to their
  start.
- kill -9 of the router, then a restart: the workers register again and the cluster serves
  within 3 heartbeats of the router listening.
- a decode worker down for 60 s, then restarted: it serves within 2 s of being healthy (the
  router's channel to it does not sit in a long reconnect backoff).

Labelled `fault` (the CPU-only second pass of deploy/run-tests.sh skips it).
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

router_pb2, router_pb2_grpc, common_pb2 = lib.stubs()

HEARTBEAT_S = 1.0  # the router's default --heartbeat-interval-ms
QUESTIONS = [
    "What is the capital of France?", "Name three colours of the rainbow.",
    "Why is the sky blue?", "Write a haiku about the sea.", "What do bees make?",
    "How many legs does a spider have?", "Tell me a fact about the moon.",
    "What is two plus two?",
]
PARAGRAPH = ("The quick brown fox jumps over the lazy dog while the farmer watches from the old "
             "wooden fence. ")


class Stream:
    """One Generate call on a thread: .done is set when it ends; then .error (a grpc.RpcError)
    or .final, and .token_ids / .text as received."""

    def __init__(self, router: str, timeout_s: float = 300, **fields):
        self.done = threading.Event()
        self.error: grpc.RpcError | None = None
        self.final = None
        self.token_ids: list[int] = []
        self.text = ""
        self._router, self._timeout_s = router, timeout_s
        self._request = router_pb2.GenerateRequest(**fields)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            with grpc.insecure_channel(self._router) as channel:
                stub = router_pb2_grpc.RouterStub(channel)
                for response in stub.Generate(self._request, timeout=self._timeout_s):
                    if response.HasField("final"):
                        self.final = response.final
                    else:
                        self.token_ids.extend(response.chunk.token_ids)
                        self.text += response.chunk.text
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.done.set()

    def wait_ok(self, timeout_s: float, what: str) -> None:
        assert self.done.wait(timeout_s), f"{what}: still running after {timeout_s} s"
        assert self.error is None, f"{what}: {self.error.code()} {self.error.details()}"
        assert self.final is not None, f"{what}: no final message"


def chat(question: str, max_tokens: int) -> dict:
    return dict(chat=router_pb2.ChatPrompt(messages=[
        router_pb2.ChatMessage(role="user", content=question)]),
        max_tokens=max_tokens, ignore_eos=True)


def log_tails(run_dir: pathlib.Path) -> str:
    return "".join(f"\n---- {f.name} ----\n" + "".join(f.read_text().splitlines(True)[-15:])
                   for f in sorted(run_dir.glob("*.log")))


def healthy_workers(router: str) -> set[str]:
    try:
        with grpc.insecure_channel(router) as channel:
            workers = router_pb2_grpc.RouterStub(channel).ListWorkers(
                router_pb2.ListWorkersRequest(), timeout=2).workers
    except grpc.RpcError:
        return set()
    return {w.worker_id for w in workers if w.healthy}


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, int(port))) == 0


def remove_shm_pool_of(pid: int) -> None:
    """Unlinks the KV pool object a SIGKILLed decode worker left in /dev/shm (named for its pid)."""
    if not lib.alive(pid):
        for path in pathlib.Path("/dev/shm").glob(f"pdserve-kv-{pid}-*"):
            path.unlink(missing_ok=True)


def reap(procs: list) -> None:
    for proc in procs:  # launch.sh --stop (cluster()) has stopped them: reap
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def smollm2() -> pathlib.Path:
    lib.require_cluster_binaries()
    return lib.run_fetch_model()


def test_decode_worker_killed_mid_stream_every_stream_completes_with_the_same_text(
        tmp_path, smollm2):
    config, router = lib.write_config(tmp_path, "failover-decode", smollm2, 2, 2)
    run_dir = tmp_path / "run"
    killed = []
    try:
        with lib.cluster(config, run_dir) as pids:
            killed.append(pids["decode-1"])
            _decode_kill_case(router, run_dir, pids)
    finally:
        for pid in killed:
            remove_shm_pool_of(pid)


def _decode_kill_case(router: str, run_dir: pathlib.Path, pids: dict) -> None:
    undisturbed = [Stream(router, **chat(q, 120)) for q in QUESTIONS]
    for i, s in enumerate(undisturbed):
        s.wait_ok(300, f"undisturbed stream {i}")
        assert len(s.token_ids) == 120, (i, len(s.token_ids))

    streams = [Stream(router, **chat(q, 120)) for q in QUESTIONS]
    time.sleep(2.0)
    running = [i for i, s in enumerate(streams) if not s.done.is_set()]
    assert running, "every stream ended within 2 s: nothing was in flight at the kill"
    os.kill(pids["decode-1"], signal.SIGKILL)
    killed_at = time.monotonic()
    # Requests sent in the second after the kill all succeed: none goes to the dead worker.
    after = []
    while time.monotonic() - killed_at < 1.0:
        after.append(Stream(router, text="Once upon a time", max_tokens=4))
        time.sleep(0.2)
    for i, s in enumerate(streams):
        s.wait_ok(300, f"stream {i} (decode-1 killed){log_tails(run_dir)}")
        assert s.token_ids == undisturbed[i].token_ids, (
            f"stream {i}: tokens differ from the undisturbed run\n"
            f"undisturbed: {undisturbed[i].text!r}\nafter kill:  {s.text!r}")
        assert s.text == undisturbed[i].text
        assert s.final.usage.completion_tokens == 120
    moved = [s.final.decode_worker for s in streams]
    print(f"{len(running)} streams in flight at the kill; final decode workers: {moved}")
    for i, s in enumerate(after):
        s.wait_ok(120, f"request {i} sent after the kill")
        assert s.final.decode_worker == "decode-0", s.final.decode_worker
    assert "decode-1" not in healthy_workers(router)


def test_prefill_worker_killed_while_prefilling_long_prompts_all_complete(tmp_path, smollm2):
    config, router = lib.write_config(tmp_path, "failover-prefill", smollm2, 2, 1)
    run_dir = tmp_path / "run"
    with lib.cluster(config, run_dir) as pids:
        start = lib.worker_loads(router)["decode-0"]
        assert start.free_kv_blocks == start.total_kv_blocks > 0, start
        prompts = [f"{i}. " + PARAGRAPH * 40 for i in range(4)]  # ~800 tokens each
        streams = [Stream(router, text=p, max_tokens=4, ignore_eos=True) for p in prompts]
        busy = lib.wait_until(lambda: lib.worker_loads(router)["prefill-0"].active_sequences
                              + lib.worker_loads(router)["prefill-0"].queue_length > 0, 30,
                              interval_s=0.05)
        assert busy, f"prefill-0 never took a prompt{log_tails(run_dir)}"
        os.kill(pids["prefill-0"], signal.SIGKILL)
        for i, s in enumerate(streams):
            s.wait_ok(300, f"long prompt {i} (prefill-0 killed){log_tails(run_dir)}")
            assert s.final.prefill_worker == "prefill-1", s.final.prefill_worker
        freed = lib.wait_until(
            lambda: lib.worker_loads(router)["decode-0"].free_kv_blocks == start.free_kv_blocks,
            3 * HEARTBEAT_S)
        assert freed, (f"decode-0 has {lib.worker_loads(router)['decode-0'].free_kv_blocks} "
                       f"free blocks, {start.free_kv_blocks} at the start{log_tails(run_dir)}")


def test_router_killed_and_restarted_serves_within_three_heartbeats(tmp_path):
    lib.require_cluster_binaries()
    config, router = lib.write_config(tmp_path, "failover-router", lib.stories_model(), 1, 1)
    run_dir = tmp_path / "run"
    restarted = []
    try:
        with lib.cluster(config, run_dir) as pids:
            Stream(router, text="Once", max_tokens=4).wait_ok(60, "before the kill")
            os.kill(pids["router"], signal.SIGKILL)
            assert lib.wait_until(lambda: not lib.alive(pids["router"]), 5)
            restarted.append(lib.restart_process(run_dir, "router"))
            assert lib.wait_until(lambda: listening(router), 30, interval_s=0.02), (
                f"the restarted router does not listen{log_tails(run_dir)}")
            up_at = time.monotonic()
            served = None
            while served is None and time.monotonic() - up_at < 3 * HEARTBEAT_S:
                s = Stream(router, text="Once", max_tokens=4, timeout_s=5)
                s.done.wait(5)
                if s.error is None and s.final is not None:
                    served = time.monotonic() - up_at
                else:
                    time.sleep(0.05)
            print(f"served {served} s after the restarted router listened")
            assert served is not None, (
                f"no request served within {3 * HEARTBEAT_S} s of the router's restart"
                f"{log_tails(run_dir)}")
    finally:
        reap(restarted)


def test_worker_back_after_60_s_down_serves_within_2_s_of_being_healthy(tmp_path):
    lib.require_cluster_binaries()
    config, router = lib.write_config(tmp_path, "failover-restart", lib.stories_model(), 1, 1)
    run_dir = tmp_path / "run"
    restarted = []
    try:
        with lib.cluster(config, run_dir) as pids:
            Stream(router, text="Once", max_tokens=4).wait_ok(60, "before the kill")
            os.kill(pids["decode-0"], signal.SIGKILL)
            down_at = time.monotonic()
            # Requests while it is down fail, and drive the router's channel into backoff.
            while time.monotonic() - down_at < 60:
                s = Stream(router, text="Once", max_tokens=4, timeout_s=10)
                s.done.wait(15)
                assert s.error is not None, "a request succeeded with no decode worker"
                time.sleep(5)
            restarted.append(lib.restart_process(run_dir, "decode-0"))
            assert lib.wait_until(lambda: "decode-0" in healthy_workers(router), 60,
                                  interval_s=0.05), f"decode-0 never came back{log_tails(run_dir)}"
            healthy_at = time.monotonic()
            served = None
            while served is None and time.monotonic() - healthy_at < 2.0:
                s = Stream(router, text="Once", max_tokens=4, timeout_s=2)
                s.done.wait(3)
                if s.error is None and s.final is not None:
                    served = time.monotonic() - healthy_at
            print(f"served {served} s after decode-0 was healthy again")
            assert served is not None, (
                f"decode-0 did not serve within 2 s of being healthy{log_tails(run_dir)}")
    finally:
        reap(restarted)
