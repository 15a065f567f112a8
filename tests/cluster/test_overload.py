"""Bounded concurrency under a flood (docs/reliability.md): 1,000 concurrent closed-loop streams
and 200 streams that never read, on a launched stories260K 1 prefill + 1 decode cluster
(bench/load/load_gen.py drives them, over grpc.aio from one process).

Meanwhile, every 0.2 s, the router's and the decode worker's thread counts and resident memory
are sampled (/proc/PID/status), and every second a probe request on a connection of its own
must get its first token within 2 s (the router's queue is fair between clients, and admits
requests as decode room frees up, so one client's flood does not starve another's request).

Must hold:
- router and decode worker each stay at or below 64 + 8 x cores threads, and below 2x their idle
  resident memory + 256 MiB;
- every probe gets its first token within 2 s;
- every flood request is served or refused with RESOURCE_EXHAUSTED (load_gen's JSON line);
- afterwards the decode pool is back to its start and the router has nothing in flight.
The test prints the peaks. Labelled `fault`.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

router_pb2, router_pb2_grpc, common_pb2 = lib.stubs()

CONCURRENCY, NEVER_READ, DURATION_S = 1000, 200, 20
PROBE_TTFT_LIMIT_S = 2.0


def proc_status(pid: int) -> tuple[int, int]:
    """(threads, resident bytes) of pid."""
    threads = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return threads, rss


class Sampler:
    """Peak threads and RSS of some pids, sampled every 0.2 s on a thread."""

    def __init__(self, pids: dict):
        self.pids = pids
        self.peak = {name: (0, 0) for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                threads, rss = proc_status(pid)
                old = self.peak[name]
                self.peak[name] = (max(old[0], threads), max(old[1], rss))
            time.sleep(0.2)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return self.peak


def probe_ttft(router: str) -> float:
    """Seconds from sending a small request (own connection) to its first token."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(router, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = router_pb2_grpc.RouterStub(channel)
        start = time.monotonic()
        for response in stub.Generate(router_pb2.GenerateRequest(
                text="Once upon a time", max_tokens=8, ignore_eos=True), timeout=60):
            if response.HasField("chunk") and response.chunk.token_ids:
                return time.monotonic() - start
    raise AssertionError("the probe got no token")


def test_flood_and_unread_streams_stay_bounded_and_a_probe_is_served_in_2_s(tmp_path):
    lib.require_cluster_binaries()
    config, router = lib.write_config(tmp_path, "overload", lib.stories_model(), 1, 1)
    run_dir = tmp_path / "run"
    cores = os.cpu_count() or 1
    thread_limit = 64 + 8 * cores
    with lib.cluster(config, run_dir) as pids:
        watched = {"router": pids["router"], "decode-0": pids["decode-0"]}
        probe_ttft(router)  # warm up
        idle = {name: proc_status(pid) for name, pid in watched.items()}
        start_pool = lib.worker_loads(router)["decode-0"]

        sampler = Sampler(watched)
        load = subprocess.Popen(
            [sys.executable, str(lib.root_dir() / "bench" / "load" / "load_gen.py"),
             "--router", router, "--concurrency", str(CONCURRENCY), "--never-read",
             str(NEVER_READ), "--duration-s", str(DURATION_S), "--prompt-tokens", "8:32",
             "--output-tokens", "16:64", "--timeout-s", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        probes = []
        try:
            time.sleep(3)  # the flood is on
            while load.poll() is None and len(probes) < DURATION_S - 5:
                probes.append(probe_ttft(router))
                time.sleep(max(0.0, 1.0 - probes[-1]))
            out, err = load.communicate(timeout=300)
        finally:
            if load.poll() is None:
                load.kill()
                load.communicate()
        peak = sampler.stop()
        print(out, err[-2000:])
        for name in watched:
            print(f"{name}: idle {idle[name][0]} threads, {idle[name][1] >> 20} MiB; peak "
                  f"{peak[name][0]} threads, {peak[name][1] >> 20} MiB (limit {thread_limit} "
                  f"threads, {(2 * idle[name][1] >> 20) + 256} MiB)")
        print(f"probe TTFT s: {[round(p, 3) for p in probes]}")

        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["served"] > 0, summary
        assert not summary["failed"], f"requests failed other than by refusal: {summary}"
        assert summary["served"] + summary["refused"] == summary["requests"], summary
        assert len(probes) >= 5, f"only {len(probes)} probes ran: {summary}"
        assert max(probes) <= PROBE_TTFT_LIMIT_S, f"probe TTFTs {probes}"
        for name in watched:
            assert peak[name][0] <= thread_limit, (name, peak[name], thread_limit)
            assert peak[name][1] < 2 * idle[name][1] + (256 << 20), (name, peak[name], idle[name])

        back = lib.wait_until(
            lambda: lib.worker_loads(router)["decode-0"].free_kv_blocks
            == start_pool.free_kv_blocks and lib.stats(router).cluster.requests.in_flight == 0,
            30)
        assert back, (f"after the flood: decode-0 has {lib.worker_loads(router)['decode-0']}, "
                      f"{start_pool.free_kv_blocks} free at the start; router in flight "
                      f"{lib.stats(router).cluster.requests.in_flight}")
