#!/usr/bin/env python3
"""A soak run (docs/reliability.md) on a cluster this script launches from CONFIG
(deploy/launch.sh --detach; stopped at the end, also on an error: only what it launched).

For --duration-s, --concurrency clients send mixed requests in a closed loop (short and long
prompts and outputs, plain and seeded sampling); about one in --cancel-fraction of them is
cancelled by its client at a random moment; every --restart-every-s one worker, chosen at
random, is killed with SIGKILL and started again with the command line launch.sh logged. At the
end it checks and prints:
  - completed + failed + cancelled = sent (every request ended, none hangs);
  - no leaked KV block: every decode worker's free blocks return to its total;
  - the router has nothing in flight;
  - the router's resident memory grew by at most --rss-growth-mib from after the warm-up to the
    end (workers restart, so their memory is printed, not checked).

  bench/load/soak.py --config deploy/clusters/tiny.conf --duration-s 600

Environment: deploy/launch.sh's (PDSERVE_BUILD_DIR, PDSERVE_SHARED_DIR); the run dir (logs,
pids) is --run-dir, default a new temp dir. Exit status: 0 when everything above holds, 1 when
something does not (or the cluster failed to start), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
FAILURE_EXAMPLES: dict = {}  # one message per status code of the failed requests
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "deploy" / "lib"))
from launched_cluster import read_pids, restart_process  # noqa: E402


def parse_args(argv: list) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the cluster config to launch")
    p.add_argument("--duration-s", type=float, default=600.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--restart-every-s", type=float, default=60.0)
    p.add_argument("--cancel-fraction", type=float, default=0.1)
    p.add_argument("--rss-growth-mib", type=float, default=64.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", help="logs and pids (default: a new temp dir)")
    args = p.parse_args(argv)
    if args.duration_s <= 0 or args.concurrency < 1 or args.restart_every_s <= 0:
        p.error("--duration-s, --concurrency and --restart-every-s must be positive")
    if not 0 <= args.cancel_fraction <= 1:
        p.error("--cancel-fraction must be in [0, 1]")
    return args


def launch(args, *words) -> subprocess.CompletedProcess:
    env = dict(os.environ, PDSERVE_RUN_DIR=args.run_dir)
    return subprocess.run(["bash", str(ROOT / "deploy" / "launch.sh"), *words], env=env,
                          capture_output=True, text=True, timeout=300)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def random_request(router_pb2, rng: random.Random):
    from load_workload import WORDS
    long_prompt = rng.random() < 0.2
    # Words are one or two tokens; prompt + output stay inside a 512-token context.
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(80, 150) if long_prompt
                                                           else rng.randint(4, 40)))
    common_pb2 = sys.modules["common_pb2"]  # compiled beside router_pb2 by load_stubs
    sampling = (common_pb2.SamplingOptions(temperature=0.8, top_p=0.9, seed=rng.randint(1, 1000))
                if rng.random() < 0.5 else None)
    return router_pb2.GenerateRequest(text=prompt, max_tokens=rng.randint(1, 100),
                                      ignore_eos=rng.random() < 0.5, sampling=sampling)


async def client(stub, router_pb2, rng, args, until: float, counts: collections.Counter):
    import grpc
    while time.monotonic() < until:
        request = random_request(router_pb2, rng)
        cancel_after = rng.uniform(0.0, 2.0) if rng.random() < args.cancel_fraction else None
        counts["sent"] += 1
        call = stub.Generate(request, timeout=120)

        async def read_all():
            async for _ in call:
                pass
        try:
            if cancel_after is None:
                await read_all()
            else:
                await asyncio.wait_for(read_all(), cancel_after)
            counts["completed"] += 1
        except asyncio.TimeoutError:
            call.cancel()
            counts["cancelled"] += 1
        except grpc.aio.AioRpcError as e:
            counts["failed"] += 1
            counts[f"failed {e.code().name}"] += 1
            FAILURE_EXAMPLES.setdefault(e.code().name, e.details())
            await asyncio.sleep(0.05)


async def run_load(router: str, args, run_dir: pathlib.Path, procs: list) -> collections.Counter:
    import grpc.aio
    import load_client as lc
    router_pb2, router_pb2_grpc = lc.load_stubs()
    rng = random.Random(args.seed)
    counts = collections.Counter()
    channels = lc.make_channels(router, max(1, args.concurrency // 50))
    stubs = [router_pb2_grpc.RouterStub(c) for c in channels]
    until = time.monotonic() + args.duration_s

    async def restarter():
        names = [n for n in read_pids(run_dir) if n != "router"]
        while True:
            await asyncio.sleep(min(args.restart_every_s, max(0.0, until - time.monotonic())))
            if time.monotonic() >= until - 1:
                return
            name = rng.choice(names)
            pid = read_pids(run_dir)[name]
            os.kill(pid, signal.SIGKILL)
            counts["restarts"] += 1
            print(f"soak: killed {name} (pid {pid}); restarting it", flush=True)
            await asyncio.sleep(0.5)
            procs.append(restart_process(run_dir, name, "soak.py"))

    try:
        tasks = [client(stubs[i % len(stubs)], router_pb2, random.Random(rng.random()), args,
                        until, counts) for i in range(args.concurrency)]
        await asyncio.gather(restarter(), *tasks)
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    return counts


def main(argv: list) -> int:
    args = parse_args(argv)
    import grpc
    import load_client as lc
    run_dir = pathlib.Path(args.run_dir or tempfile.mkdtemp(prefix="pdserve_soak_"))
    args.run_dir = str(run_dir)
    config = pathlib.Path(args.config)
    if not config.is_file():
        print(f"soak: no config file {config}", file=sys.stderr)
        return 2
    values = dict(l.split("=", 1) for l in config.read_text().splitlines()
                  if "=" in l and not l.startswith("#"))
    router = f"{values.get('host', '127.0.0.1')}:{values['router_port']}"
    started = launch(args, "--detach", config)
    if started.returncode != 0:
        print(f"soak: the launch failed:\n{started.stdout}{started.stderr}", file=sys.stderr)
        return 1
    procs: list = []
    problems = []
    try:
        router_pb2, router_pb2_grpc = lc.load_stubs()
        with grpc.insecure_channel(router) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            for _ in stub.Generate(router_pb2.GenerateRequest(text="Once", max_tokens=4),
                                   timeout=60):
                pass
            pids = read_pids(run_dir)
            rss_start = {n: rss_mib(p) for n, p in pids.items()}
            counts = asyncio.run(run_load(router, args, run_dir, procs))

            def decode_pools():
                workers = stub.ListWorkers(router_pb2.ListWorkersRequest(), timeout=10).workers
                return {w.worker_id: (w.load.free_kv_blocks, w.load.total_kv_blocks, w.healthy)
                        for w in workers if w.role == 2}

            deadline = time.monotonic() + 30
            while True:
                pools = decode_pools()
                in_flight = stub.GetStats(router_pb2.GetStatsRequest(),
                                          timeout=10).cluster.requests.in_flight
                settled = in_flight == 0 and all(f == t and h for f, t, h in pools.values())
                if settled or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            pids = read_pids(run_dir)
            rss_end = {n: rss_mib(p) for n, p in pids.items()}
        ended = counts["completed"] + counts["failed"] + counts["cancelled"]
        growth = rss_end["router"] - rss_start["router"]
        report = {"duration_s": args.duration_s, "concurrency": args.concurrency,
                  **{k: v for k, v in counts.items()}, "ended": ended, "decode_pools": pools,
                  "router_in_flight": in_flight, "router_rss_growth_mib": round(growth, 1),
                  "rss_start_mib": {k: round(v, 1) for k, v in rss_start.items()},
                  "rss_end_mib": {k: round(v, 1) for k, v in rss_end.items()},
                  "failure_examples": FAILURE_EXAMPLES}
        print(json.dumps(report), flush=True)
        if ended != counts["sent"]:
            problems.append(f"{counts['sent']} sent but {ended} ended")
        if in_flight != 0:
            problems.append(f"the router still has {in_flight} requests in flight")
        for worker, (free, total, healthy) in pools.items():
            if free != total or not healthy:
                problems.append(f"{worker}: {free} of {total} KV blocks free (healthy: {healthy})")
        if growth > args.rss_growth_mib:
            problems.append(f"the router's RSS grew by {growth:.1f} MiB "
                            f"(bound {args.rss_growth_mib} MiB)")
    finally:
        stopped = launch(args, "--stop", config)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if stopped.returncode != 0:
            problems.append(f"launch.sh --stop failed: {stopped.stderr}")
    for problem in problems:
        print(f"soak: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
