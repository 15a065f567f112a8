"""Helpers for the cluster tests: gRPC stubs generated from proto/ at run time, cluster configs
written to a temp dir, deploy/launch.sh, and pdserve-generate as the reference.

Where things are (root_dir, build_dir, shared_dir, binary), free_ports and the SmolLM2 download
come from tests/python/pdserve_testlib.py and are re-exported here for the cluster tests.
ctest sets PDSERVE_ROOT, PDSERVE_BUILD_DIR and PDSERVE_SHARED_DIR. A missing binary or model is
a failure with a message, never a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

_THIS_DIR = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_THIS_DIR.parent / "python"))
from pdserve_testlib import (binary, build_dir, free_ports, root_dir, run_binary,  # noqa: E402,F401
                             shared_dir)
from pdserve_testlib import fetch_smollm2 as run_fetch_model  # noqa: E402,F401

sys.path.insert(0, str(_THIS_DIR.parents[1] / "deploy" / "lib"))
import launched_cluster  # noqa: E402

ROUTER_BIN = "router/pdserve-router"
PREFILL_BIN = "prefill_node/pdserve-prefill-worker"
DECODE_BIN = "decode_node/pdserve-decode-worker"
CLIENT_BIN = "cli/pdserve-client"
GENERATE_BIN = "cli/pdserve-generate"


def require_cluster_binaries() -> None:
    """Fails, naming every missing one, unless the router, both workers and the client exist."""
    missing = []
    for rel in (ROUTER_BIN, PREFILL_BIN, DECODE_BIN, CLIENT_BIN, GENERATE_BIN):
        try:
            binary(rel)
        except AssertionError:
            missing.append(str(build_dir() / rel))
    if missing:
        raise AssertionError("the cluster tests need these binaries, which are missing: "
                             + ", ".join(missing))


@functools.lru_cache(maxsize=1)
def stubs():
    """(router_pb2, router_pb2_grpc, common_pb2), generated from proto/*.proto into a temp dir."""
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="pdserve_stubs_")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    proto_dir = root_dir() / "proto"
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
            f"--grpc_python_out={out}"] + [str(p) for p in sorted(proto_dir.glob("*.proto"))]
    if protoc.main(args) != 0:
        raise AssertionError(f"grpc_tools.protoc failed on {proto_dir}")
    sys.path.insert(0, out)
    import common_pb2, router_pb2, router_pb2_grpc  # noqa: E401
    return router_pb2, router_pb2_grpc, common_pb2


def stories_model() -> pathlib.Path:
    """stories260K.gguf in the shared folder (the tiny cluster tests' model)."""
    path = shared_dir() / "models" / "stories260K.gguf"
    assert path.is_file(), f"{path} is missing"
    return path


def stories_goldens() -> list:
    """The reference greedy outputs of stories260K, one dict a prompt."""
    import json
    with open(shared_dir() / "golden" / "stories260K_greedy.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_config(directory: pathlib.Path, name: str, model: pathlib.Path, n_prefill: int,
                 n_decode: int, extra: dict | None = None) -> tuple[pathlib.Path, str]:
    """A cluster config on free ports; returns (its path, the router's address). Worker ports
    (gRPC and metrics) are base + i, so each role gets two blocks of consecutive ports checked
    free one by one, apart from every other port chosen."""
    router_port, http_port = free_ports(2)
    taken = {router_port, http_port}
    bases = []
    for count in (n_prefill, n_decode, n_prefill, n_decode):
        for _ in range(50):
            base = free_ports(1)[0]
            block = range(base, base + count)
            if base + count < 65535 and taken.isdisjoint(block) and _all_free(block):
                bases.append(base)
                taken.update(block)
                break
        else:
            raise AssertionError(f"found no {count} consecutive free ports")
    lines = {
        "model": str(model), "host": "127.0.0.1", "router_port": router_port,
        "http_port": http_port,
        "prefill_workers": n_prefill, "decode_workers": n_decode,
        "prefill_base_port": bases[0], "decode_base_port": bases[1],
        "prefill_metrics_base_port": bases[2], "decode_metrics_base_port": bases[3], "threads": 1,
        "kv_pool_tokens": 4096, "health_timeout_s": 90,
    }
    lines.update(extra or {})
    path = directory / f"{name}.conf"
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return path, f"127.0.0.1:{router_port}"


def http_base(config: pathlib.Path) -> str:
    """The router's HTTP API of a config write_config wrote: "http://127.0.0.1:PORT"."""
    for line in config.read_text().splitlines():
        if line.startswith("http_port="):
            return f"http://127.0.0.1:{line.split('=', 1)[1]}"
    raise AssertionError(f"{config} has no http_port")


def _all_free(ports) -> bool:
    for p in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def launch_script() -> pathlib.Path:
    return root_dir() / "deploy" / "launch.sh"


def run_launch(args: list, run_dir: pathlib.Path, timeout_s: float = 150.0,
               env_extra: dict | None = None, build: pathlib.Path | None = None):
    env = dict(os.environ, PDSERVE_RUN_DIR=str(run_dir),
               PDSERVE_BUILD_DIR=str(build or build_dir()), **(env_extra or {}))
    try:
        return subprocess.run(["bash", str(launch_script())] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"launch.sh {args} timed out after {timeout_s} s: {e.stderr}")


@contextlib.contextmanager
def cluster(config: pathlib.Path, run_dir: pathlib.Path):
    """Launches with --detach; always stops on exit, then checks that every pid is gone."""
    result = run_launch(["--detach", config], run_dir)
    try:
        if result.returncode != 0:
            raise AssertionError(f"launch.sh --detach failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        pids = read_pids(run_dir)
        yield pids
    finally:
        pids = read_pids(run_dir) if (run_dir / "pids").exists() else {}
        stop = run_launch(["--stop", config], run_dir, timeout_s=60)
        assert stop.returncode == 0, stop.stderr
        assert_all_gone(pids)


def read_pids(run_dir: pathlib.Path) -> dict:
    return launched_cluster.read_pids(run_dir)


def alive(pid: int) -> bool:
    """True while pid runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def assert_all_gone(pids: dict, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids.values()):
        time.sleep(0.1)
    left = {n: p for n, p in pids.items() if alive(p)}
    assert not left, f"processes left running after --stop: {left}"


def pgrep_pdserve(marker: str) -> list[str]:
    """Lines of `pgrep -af pdserve` that also contain marker (e.g. this test's run dir or port)."""
    result = subprocess.run(["pgrep", "-af", "pdserve"], capture_output=True, text=True)
    return [l for l in result.stdout.splitlines() if marker in l and "pgrep" not in l]


def generate_reference(model: pathlib.Path, prompt: str, max_tokens: int, chat: bool = False,
                       extra: list | None = None, timeout_s: float = 120.0) -> str:
    """The text pdserve-generate writes for this request in one process."""
    args = [binary(GENERATE_BIN), "--model", model, "--prompt", prompt,
            "--max-tokens", max_tokens] + (["--chat"] if chat else []) + (extra or [])
    return run_binary(args, timeout_s).stdout


def stats(router: str):
    """The router's GetStatsResponse."""
    import grpc
    router_pb2, router_pb2_grpc, _ = stubs()
    with grpc.insecure_channel(router) as channel:
        return router_pb2_grpc.RouterStub(channel).GetStats(router_pb2.GetStatsRequest(),
                                                            timeout=10)


def client(router: str, args: list, timeout_s: float = 120.0,
           build: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    """Runs pdserve-client; returns the completed process (the caller checks the status)."""
    cmd = [str(binary(CLIENT_BIN, build)), "--router", router] + [str(a) for a in args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"pdserve-client timed out after {timeout_s} s: {e.stderr}")


# ---- worker loads, what a process has received, restarting a killed worker -----------------
# (test_kv_failures.py, test_kv_netns.py)


def worker_loads(router: str) -> dict:
    """{worker id: WorkerLoad} from the router's ListWorkers. Loads come with heartbeats (about
    every second), so they lag the workers by up to a heartbeat."""
    import grpc
    router_pb2, router_pb2_grpc, _ = stubs()
    with grpc.insecure_channel(router) as channel:
        workers = router_pb2_grpc.RouterStub(channel).ListWorkers(
            router_pb2.ListWorkersRequest(), timeout=10).workers
    return {w.worker_id: w.load for w in workers}


def wait_until(predicate, timeout_s: float, interval_s: float = 0.1):
    """predicate()'s first truthy value within timeout_s, or its last (falsy) value after it."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


def rss_shmem_bytes(pid: int) -> int:
    """Shared-memory bytes mapped and touched by pid (RssShmem in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no RssShmem line")


def tcp_bytes_received(pid: int, netns: str | None = None) -> int:
    """Bytes pid's TCP sockets have received, summed (bytes_received of `ss -tinp`, iproute2);
    netns: the named network namespace pid's sockets live in."""
    cmd = ["ss", "-tinpH"]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    total, ours = 0, False
    for line in out.splitlines():
        if not line[:1].isspace():  # a socket's first line; its details follow, indented
            ours = f"pid={pid}," in line
        elif ours:
            for field in line.split():
                if field.startswith("bytes_received:"):
                    total += int(field.split(":", 1)[1])
    return total


def restart_process(run_dir: pathlib.Path, name: str) -> subprocess.Popen:
    """Starts process `name` of a launched cluster again, by hand, with the command line
    launch.sh logged (deploy/lib/launched_cluster.py); launch.sh --stop (and cluster()) stops it
    like the others. The caller waits for the Popen."""
    return launched_cluster.restart_process(run_dir, name, "the test")
