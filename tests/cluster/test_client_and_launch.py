"""pdserve-client and deploy/launch.sh against stand-ins (pdserve_fake_router.py,
pdserve_fake_worker.py), so they are tested without the real router and workers: the client's
flag → request mapping, its output and its errors; launch.sh's detach/stop/foreground modes, its
failure paths and that it leaves no process behind."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def fake_router():
    """The fake router on a free port; yields its address."""
    lib.binary(lib.CLIENT_BIN)
    port = lib.free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, str(HERE / "pdserve_fake_router.py"),
                             "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PDSERVE_FAKE_WORKERS="3"))
    try:
        line = proc.stderr.readline()  # "listening on ..." once serving, EOF if it died
        assert "listening on" in line, f"fake router did not start: {line}"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_client_streams_text_and_prints_timing(fake_router):
    r = lib.client(fake_router, ["--prompt", "Once upon", "--max-tokens", "7"], timeout_s=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("text=Once upon;max_tokens=7;sampling=;stop=;ignore_eos=False;"
                        "request_id= done")
    assert "TTFT 12.50 ms" in r.stderr and "TPOT 2.50 ms" in r.stderr, r.stderr
    assert "finish: length" in r.stderr and "generated 3 tokens" in r.stderr, r.stderr


def test_client_maps_chat_and_sampling_flags(fake_router):
    r = lib.client(fake_router, [
        "--chat", "--system", "Be brief.", "--prompt", "Hi there", "--max-tokens", "5",
        "--temperature", "0.5", "--top-k", "40", "--top-p", "0.75", "--repetition-penalty", "1.25",
        "--seed", "1234", "--stop", "END", "--stop", "\n\n", "--ignore-eos",
        "--request-id", "req-9"], timeout_s=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("chat=system:Be brief.|user:Hi there;max_tokens=5;sampling=temperature=0.5,"
                        "top_k=40,top_p=0.75,repetition_penalty=1.25,seed=1234;stop=END,\n\n;"
                        "ignore_eos=True;request_id=req-9 done")


def test_client_reports_the_grpc_status_on_bad_input(fake_router):
    r = lib.client(fake_router, ["--prompt", "x", "--max-tokens", "0"], timeout_s=30)
    assert r.returncode != 0
    assert "INVALID_ARGUMENT" in r.stderr and "max_tokens must be >= 1, got 0" in r.stderr
    assert r.stdout == ""


def test_client_usage_errors_exit_2(fake_router):
    for args in (["--prompt", "x", "--no-such-flag"], ["--prompt", "x", "--max-tokens", "ten"],
                 ["--max-tokens", "3"], ["--prompt", "x", "--system", "s"]):
        r = lib.client(fake_router, args, timeout_s=30)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("pdserve-client: "), r.stderr


def test_client_unreachable_router_fails_within_its_timeout():
    port = lib.free_ports(1)[0]
    start = time.monotonic()
    r = lib.client(f"127.0.0.1:{port}", ["--prompt", "x", "--timeout-ms", "1500"], timeout_s=30)
    assert r.returncode == 1
    assert "UNAVAILABLE" in r.stderr or "DEADLINE_EXCEEDED" in r.stderr, r.stderr
    assert time.monotonic() - start < 10


def test_client_list_workers_and_stats(fake_router):
    r = lib.client(fake_router, ["--list-workers"], timeout_s=30)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["fake-0", "fake-1", "fake-2"]
    assert [row[1] for row in rows] == ["prefill", "decode", "prefill"]
    assert all(row[3] == "healthy" for row in rows)
    assert rows[0][6] == "30/32"
    lib.client(fake_router, ["--prompt", "x", "--max-tokens", "1"], timeout_s=30)
    r = lib.client(fake_router, ["--stats"], timeout_s=30)
    assert r.returncode == 0, r.stderr
    assert "cluster: received" in r.stdout and "p90     30.00 ms" in r.stdout, r.stdout


# ---- launch.sh against stand-ins --------------------------------------------------------------


@pytest.fixture
def fake_build(tmp_path):
    """A build dir whose router and workers are the fakes and whose client is the real one."""
    build = tmp_path / "build"
    for rel, script in ((lib.ROUTER_BIN, "pdserve_fake_router.py"),
                        (lib.PREFILL_BIN, "pdserve_fake_worker.py"),
                        (lib.DECODE_BIN, "pdserve_fake_worker.py")):
        path = build / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / script}" "$@"\n')
        path.chmod(0o755)
    (build / "cli").mkdir(exist_ok=True)
    (build / lib.CLIENT_BIN).symlink_to(lib.binary(lib.CLIENT_BIN))
    return build


def fake_config(tmp_path, **extra):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"not a model: the fakes never read it")
    settings = {"health_timeout_s": 20}
    settings.update(extra)
    return lib.write_config(tmp_path, "fake", model, 2, 2, settings)


def test_launch_detach_then_stop_leaves_nothing(tmp_path, fake_build):
    config, router = fake_config(tmp_path)
    run_dir = tmp_path / "run"
    env = {"PDSERVE_FAKE_WORKERS": "4", "PDSERVE_FAKE_HEALTHY_AFTER_S": "1"}
    r = lib.run_launch(["--detach", config], run_dir, env_extra=env, build=fake_build)
    assert r.returncode == 0, r.stderr
    assert f"router at {router}" in r.stdout
    pids = lib.read_pids(run_dir)
    assert sorted(pids) == ["decode-0", "decode-1", "prefill-0", "prefill-1", "router"]
    assert all(lib.alive(p) for p in pids.values())
    assert (run_dir / "prefill-1.log").read_text().count("--worker-id prefill-1") == 1
    # A second launch of the same cluster is refused while the first runs.
    again = lib.run_launch(["--detach", config], run_dir, env_extra=env, build=fake_build)
    assert again.returncode == 1 and "still running" in again.stderr
    r = lib.run_launch(["--stop", config], run_dir, build=fake_build)
    assert r.returncode == 0, r.stderr
    lib.assert_all_gone(pids)
    assert not (run_dir / "pids").exists()
    assert lib.pgrep_pdserve(str(tmp_path)) == [] and lib.pgrep_pdserve(router) == []


def test_launch_passes_device_and_dtype_to_every_worker(tmp_path, fake_build):
    config, _ = fake_config(tmp_path, device="cuda", dtype="bf16")
    run_dir = tmp_path / "run"
    env = {"PDSERVE_FAKE_WORKERS": "4"}
    r = lib.run_launch(["--detach", config], run_dir, env_extra=env, build=fake_build)
    assert r.returncode == 0, r.stderr
    try:
        for worker in ("prefill-0", "prefill-1", "decode-0", "decode-1"):
            log = (run_dir / f"{worker}.log").read_text()
            assert "--device cuda --dtype bf16" in log, log
        assert "--device" not in (run_dir / "router.log").read_text()
    finally:
        assert lib.run_launch(["--stop", config], run_dir, build=fake_build).returncode == 0


def test_launch_kills_a_process_that_ignores_sigterm(tmp_path, fake_build):
    config, _ = fake_config(tmp_path)
    run_dir = tmp_path / "run"
    env = {"PDSERVE_FAKE_WORKERS": "4", "PDSERVE_FAKE_IGNORE_TERM": "1"}
    assert lib.run_launch(["--detach", config], run_dir, env_extra=env,
                          build=fake_build).returncode == 0
    pids = lib.read_pids(run_dir)
    r = lib.run_launch(["--stop", config], run_dir, build=fake_build,
                       env_extra={"PDSERVE_STOP_GRACE_S": "1"})
    assert r.returncode == 0
    assert "SIGKILL" in r.stderr
    lib.assert_all_gone(pids)


def test_launch_fails_when_a_worker_dies_and_shows_its_log(tmp_path, fake_build):
    config, _ = fake_config(tmp_path)
    run_dir = tmp_path / "run"
    env = {"PDSERVE_FAKE_WORKERS": "4", "PDSERVE_FAKE_HEALTHY_AFTER_S": "30",
           "PDSERVE_FAKE_EXIT_ROLE": "decode"}
    r = lib.run_launch(["--detach", config], run_dir, env_extra=env, build=fake_build,
                       timeout_s=60)
    assert r.returncode == 1
    assert "exited while the cluster was starting" in r.stderr
    assert "fake failure: cannot load the model" in r.stderr
    assert not (run_dir / "pids").exists()
    assert lib.pgrep_pdserve(str(tmp_path)) == []


def test_launch_fails_when_workers_never_become_healthy(tmp_path, fake_build):
    config, _ = fake_config(tmp_path, health_timeout_s=3)
    run_dir = tmp_path / "run"
    start = time.monotonic()
    r = lib.run_launch(["--detach", config], run_dir, env_extra={"PDSERVE_FAKE_WORKERS": "3"},
                       build=fake_build, timeout_s=60)
    assert r.returncode == 1
    assert "only 3 of 4 workers became healthy within 3s" in r.stderr, r.stderr
    assert time.monotonic() - start < 30
    assert lib.pgrep_pdserve(str(tmp_path)) == []


def test_launch_rejects_a_bad_config(tmp_path, fake_build):
    config, _ = fake_config(tmp_path)
    config.write_text(config.read_text() + "prefil_workers=3\n")
    r = lib.run_launch(["--detach", config], tmp_path / "run", build=fake_build)
    assert r.returncode == 2 and "unknown key 'prefil_workers'" in r.stderr


def test_launch_foreground_stops_everything_on_ctrl_c(tmp_path, fake_build):
    config, router = fake_config(tmp_path)
    run_dir = tmp_path / "run"
    env = dict(os.environ, PDSERVE_RUN_DIR=str(run_dir), PDSERVE_BUILD_DIR=str(fake_build),
               PDSERVE_FAKE_WORKERS="4")
    proc = subprocess.Popen(["bash", str(lib.launch_script()), str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"router at {router}" in line, (line, proc.stderr.read() if proc.poll() else "")
        pids = lib.read_pids(run_dir)
        assert all(lib.alive(p) for p in pids.values())
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        assert code == 0, proc.stderr.read()
        lib.assert_all_gone(pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            lib.run_launch(["--stop", config], run_dir, build=fake_build)


def cpus_allowed(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split()[1]
    raise AssertionError(f"no Cpus_allowed_list for pid {pid}")


def test_launch_pins_processes_with_taskset(tmp_path, fake_build):
    n_cpus = len(os.sched_getaffinity(0))
    last = max(os.sched_getaffinity(0))
    config, _ = fake_config(tmp_path, router_cpus=str(last), prefill_cpus=f"{last} {last}",
                            decode_cpus=str(last))
    run_dir = tmp_path / "run"
    r = lib.run_launch(["--detach", config], run_dir, env_extra={"PDSERVE_FAKE_WORKERS": "4"},
                       build=fake_build)
    try:
        assert r.returncode == 0, r.stderr
        pids = lib.read_pids(run_dir)
        for name in ("router", "prefill-0", "prefill-1", "decode-0"):
            assert cpus_allowed(pids[name]) == str(last), name
        unpinned = cpus_allowed(pids["decode-1"])
        assert unpinned == cpus_allowed(os.getpid()), "decode-1 has no CPU list: unpinned"
        assert n_cpus == 1 or unpinned != str(last)
    finally:
        lib.run_launch(["--stop", config], run_dir, build=fake_build)
