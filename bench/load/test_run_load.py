"""bench/load against a launched tiny cluster (stories260K, 1 + 1 workers): run_load.sh uses the
cluster that is running and leaves it running, refuses to launch over it without stopping it, and
with --launch stops only the cluster it launched; load_gen.py's closed loop (--concurrency)
reports served requests in its JSON line; its unread streams (--never-read) are opened, held
until SIGTERM, and reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "cluster"))
import cluster_lib as lib  # noqa: E402

RUN_LOAD = HERE / "run_load.sh"
LOAD_GEN = HERE / "load_gen.py"
# A small load with limits loose enough for every request.
SMALL_SWEEP = ["-n", "3", "--sweep", "50", "--prompt-tokens", "8:32", "--output-tokens", "8:24",
               "--ttft-slo-ms", "60000", "--tpot-slo-ms", "10000"]


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory):
    """(config, router address, run dir, pids) of a tiny cluster launched for this module."""
    lib.require_cluster_binaries()
    tmp = tmp_path_factory.mktemp("load")
    config, router = lib.write_config(tmp, "tiny", lib.stories_model(), 1, 1)
    run_dir = tmp / "run"
    with lib.cluster(config, run_dir) as pids:
        yield config, router, run_dir, pids


def run(cmd: list, env_extra: dict | None = None, timeout_s: float = 300):
    env = dict(os.environ, PDSERVE_BUILD_DIR=str(lib.build_dir()), **(env_extra or {}))
    env.pop("PDSERVE_ROUTER", None)
    try:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{cmd} timed out after {timeout_s} s: {e.stderr}")


def assert_still_running(cluster) -> None:
    """Every process of the cluster is alive and the router lists both workers as healthy."""
    _, router, _, pids = cluster
    dead = {name: pid for name, pid in pids.items() if not lib.alive(pid)}
    assert not dead, f"processes of the running cluster are gone: {dead}"
    listed = lib.client(router, ["--list-workers", "--timeout-ms", "5000"], timeout_s=30)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("healthy") == 2, listed.stdout


def json_line(stdout: str) -> dict:
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_run_load_uses_the_running_cluster_and_leaves_it_running(running_cluster):
    config, router, _, _ = running_cluster
    r = run(["bash", RUN_LOAD, "--router", router, "--", *SMALL_SWEEP])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "goodput: 50 req/s" in r.stdout, r.stdout
    assert_still_running(running_cluster)

    # Without --router, the address comes from the config.
    r = run(["bash", RUN_LOAD, "--", *SMALL_SWEEP], {"PDSERVE_CLUSTER_CONFIG": str(config)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 3/3 " in r.stdout, r.stdout
    assert_still_running(running_cluster)


def test_run_load_without_a_cluster_says_so_and_starts_nothing(tmp_path):
    config, router = lib.write_config(tmp_path, "absent", lib.stories_model(), 1, 1)
    r = run(["bash", RUN_LOAD, "--config", config, "--", *SMALL_SWEEP], timeout_s=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"nothing listens at {router}" in r.stderr, r.stderr
    assert not lib.pgrep_pdserve(router.split(":")[1]), "run_load.sh started something"


def test_run_load_launch_over_the_running_cluster_fails_and_stops_nothing(running_cluster):
    config, _, run_dir, _ = running_cluster
    r = run(["bash", RUN_LOAD, "--launch", "--config", config, "--", *SMALL_SWEEP],
            {"PDSERVE_RUN_DIR": str(run_dir)})
    assert r.returncode != 0, r.stdout + r.stderr
    assert "still running" in r.stderr, r.stderr
    assert_still_running(running_cluster)


def test_run_load_launch_stops_only_the_cluster_it_launched(running_cluster, tmp_path):
    config, router = lib.write_config(tmp_path, "own", lib.stories_model(), 1, 1)
    r = run(["bash", RUN_LOAD, "--launch", "--config", config, "--", *SMALL_SWEEP],
            {"PDSERVE_RUN_DIR": str(tmp_path / "run")})
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 3/3 " in r.stdout, r.stdout
    port = router.split(":")[1]
    assert lib.wait_until(lambda: not lib.pgrep_pdserve(f":{port} "), 10), \
        f"left running: {lib.pgrep_pdserve(f':{port} ')}"
    assert_still_running(running_cluster)


def test_closed_loop_reports_served_requests(running_cluster):
    _, router, _, _ = running_cluster
    r = run([sys.executable, LOAD_GEN, "--router", router, "--concurrency", "4", "-n", "12",
             "--prompt-tokens", "8:32", "--output-tokens", "8:24"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "served 12, refused 0" in r.stdout, r.stdout
    line = json_line(r.stdout)
    assert line["mode"] == "closed_loop" and line["concurrency"] == 4, line
    assert (line["requests"], line["served"], line["refused"], line["failed"]) == (12, 12, 0, {})
    assert line["tokens_per_s"] > 0 and line["requests_per_s"] > 0, line
    for name in ("ttft_ms", "tpot_ms"):
        p = line[name]
        assert 0 <= p["p50"] <= p["p90"] <= p["p99"], line
    assert line["ttft_ms"]["p50"] > 0, line
    assert_still_running(running_cluster)


def test_unread_streams_are_held_until_sigterm(running_cluster):
    _, router, _, _ = running_cluster
    proc = subprocess.Popen([sys.executable, str(LOAD_GEN), "--router", router, "--never-read",
                             "5", "--output-tokens", "16"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        opened = proc.stderr.readline()
        assert "load_gen: 5 unread streams open" in opened, opened
        # Served meanwhile: the unread streams do not block other clients.
        r = run([sys.executable, LOAD_GEN, "--router", router, "--concurrency", "2", "-n", "4",
                 "--prompt-tokens", "8:16", "--output-tokens", "8:16"], timeout_s=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json_line(r.stdout)["served"] == 4, r.stdout
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    line = json_line(out)
    assert line["mode"] == "never_read", line
    unread = line["unread_streams"]
    assert unread["opened"] == 5 and unread["still_open"] + sum(unread["ended"].values()) == 5, line
    assert_still_running(running_cluster)
