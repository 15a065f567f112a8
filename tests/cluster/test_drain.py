"""Graceful drain of a decode worker on SIGTERM (docs/kubernetes.md, "Draining"), on a launched
stories260K cluster of 1 prefill + 2 decode workers whose decode steps last at least 20 ms
(--min-step-ms), so that a golden prompt streams for about 4 s:

- an idle decode worker exits at once on SIGTERM, having drained nothing;
- with streams in flight on both decode workers, SIGTERM of one: within a second it leaves
  ListWorkers (it deregistered); requests sent during its drain all go to the other worker; its
  own streams finish there, on it, with the golden tokens (not failed over); and the process
  exits 0 well within --drain-timeout-s.

Labelled `fault` (it signals processes), like test_failover.py.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402
from test_failover import Stream, log_tails, reap  # noqa: E402

router_pb2, router_pb2_grpc, _ = lib.stubs()

DRAIN_TIMEOUT_S = 15
MIN_STEP_MS = 20


def listed_workers(router: str) -> dict:
    """{worker id: healthy} from the router's ListWorkers."""
    with grpc.insecure_channel(router) as channel:
        workers = router_pb2_grpc.RouterStub(channel).ListWorkers(
            router_pb2.ListWorkersRequest(), timeout=5).workers
    return {w.worker_id: w.healthy for w in workers}


def test_sigterm_drains_a_decode_worker_without_losing_or_moving_its_streams(tmp_path):
    lib.require_cluster_binaries()
    config, router = lib.write_config(
        tmp_path, "drain", lib.stories_model(), 1, 2,
        {"decode_flags": f"--min-step-ms {MIN_STEP_MS} --drain-timeout-s {DRAIN_TIMEOUT_S}"})
    run_dir = tmp_path / "run"
    goldens = lib.stories_goldens()[:4]
    restarted = []
    try:
        with lib.cluster(config, run_dir) as pids:
            # An idle worker: nothing to drain, it is gone at once. Then decode-1 is started
            # again by this test, so that its exit status can be read.
            os.kill(pids["decode-1"], signal.SIGTERM)
            assert lib.wait_until(lambda: not lib.alive(pids["decode-1"]), 5), (
                f"idle decode-1 still runs 5 s after SIGTERM{log_tails(run_dir)}")
            assert "drain idle" in (run_dir / "decode-1.log").read_text()
            decode_1 = lib.restart_process(run_dir, "decode-1")
            restarted.append(decode_1)
            assert lib.wait_until(lambda: listed_workers(router).get("decode-1"), 60), (
                f"decode-1 did not come back{log_tails(run_dir)}")

            streams = [Stream(router, text=g["prompt"], max_tokens=g["max_new_tokens"])
                       for g in goldens]
            time.sleep(1.0)
            assert not any(s.done.is_set() for s in streams), (
                "a stream ended within 1 s: nothing would be in flight at the signal")
            decode_1.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            left = lib.wait_until(lambda: not listed_workers(router).get("decode-1"), 5,
                                  interval_s=0.02)
            left_after = time.monotonic() - signalled
            print(f"decode-1 out of rotation {left_after:.3f} s after SIGTERM")
            assert left and left_after < 1.0, (
                f"decode-1 still in rotation {left_after:.2f} s after SIGTERM{log_tails(run_dir)}")

            during = []
            while decode_1.poll() is None and len(during) < 5:
                during.append(Stream(router, text="Once upon a time", max_tokens=4))
                time.sleep(0.2)
            assert during, "decode-1 exited before any request could be sent during its drain"

            ended_on_decode_1 = 0
            for i, (s, golden) in enumerate(zip(streams, goldens)):
                s.wait_ok(120, f"stream {i} (decode-1 drained){log_tails(run_dir)}")
                assert s.token_ids == golden["output_ids"][:golden["max_new_tokens"]], (
                    f"stream {i} on {s.final.decode_worker}: tokens differ from the golden")
                assert s.text == lib.generate_reference(lib.stories_model(), golden["prompt"],
                                                        golden["max_new_tokens"])
                ended_on_decode_1 += s.final.decode_worker == "decode-1"
            print(f"{ended_on_decode_1} of {len(streams)} streams finished on decode-1 while it "
                  "drained")
            assert ended_on_decode_1 > 0, (
                "no stream ran on decode-1: the drain of work in flight was not exercised; final "
                f"decode workers: {[s.final.decode_worker for s in streams]}")
            for i, s in enumerate(during):
                s.wait_ok(60, f"request {i} sent during the drain")
                assert s.final.decode_worker == "decode-0", s.final.decode_worker

            try:
                status = decode_1.wait(timeout=DRAIN_TIMEOUT_S + 5)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"decode-1 still runs {DRAIN_TIMEOUT_S + 5} s after SIGTERM"
                                     f"{log_tails(run_dir)}")
            exited_after = time.monotonic() - signalled
            print(f"decode-1 exited {status} {exited_after:.2f} s after SIGTERM")
            assert status == 0, log_tails(run_dir)
            assert exited_after < DRAIN_TIMEOUT_S, exited_after
            log = (run_dir / "decode-1.log").read_text()
            assert "deregistered from the router" in log and "drain idle" in log, log[-2000:]
            assert "decode-1" not in listed_workers(router)  # no heartbeat brought it back
    finally:
        reap(restarted)


def test_bad_drain_and_step_flags_stop_the_decode_worker_with_exit_2():
    for flag, value in (("--drain-timeout-s", "-1"), ("--drain-timeout-s", "soon"),
                        ("--min-step-ms", "-5")):
        result = subprocess.run(
            [str(lib.binary(lib.DECODE_BIN)), "--model", str(lib.stories_model()), flag, value],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (flag, value, result.stderr)
        assert flag in result.stderr, (flag, value, result.stderr)
