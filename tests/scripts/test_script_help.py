"""Every script in deploy/ and bench/ (each *.sh, and each *.py with a __main__ guard except
test_*.py) answers --help and -h with its usage on stdout and exit 0, and an unknown option with
its usage on stderr and exit 2, within a couple of seconds, starting nothing.

"Starting nothing" is checked three ways. Each script runs from a copy of deploy/ and bench/ in a
temp checkout, with PDSERVE_BUILD_DIR, PDSERVE_RUN_DIR, PDSERVE_MODELS_DIR, BUILD_DIR and
PDSERVE_FUZZ_BUILD_DIR inside it: whatever a broken --help builds, fetches or launches lands
there, and no file may appear anywhere in that checkout. Every process the script starts inherits
a marker in its environment (setsid does not shed it): none may be alive once the script exited.
And the script must finish within TIME_LIMIT_S.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time
import uuid

import pytest

ROOT = pathlib.Path(os.environ.get("PDSERVE_ROOT") or pathlib.Path(__file__).resolve().parents[2])
TIME_LIMIT_S = 5.0  # "a couple of seconds", with room for a loaded 2-core machine
MARKER_VAR = "PDSERVE_HELP_TEST_MARKER"



def scripts() -> list[str]:
    """Paths relative to ROOT of every script in deploy/ and bench/; sourced libraries
    (deploy/lib/) and Python modules without a __main__ guard are not scripts."""
    found = []
    for top in ("deploy", "bench"):
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT)
            if "lib" in rel.parts[:-1] or "__pycache__" in rel.parts or not path.is_file():
                continue
            if path.suffix == ".sh":
                found.append(str(rel))
            elif (path.suffix == ".py" and not path.name.startswith("test_")
                  and 'if __name__ == "__main__":' in path.read_text()):
                found.append(str(rel))
    return found


def test_the_scripts_are_found():
    found = scripts()
    for expected in ("deploy/launch.sh", "deploy/demo.sh", "bench/load/run_load.sh",
                     "bench/load/load_gen.py", "bench/bench_smoke.sh"):
        assert expected in found, found
    assert not any("/lib/" in s for s in found), found


def test_every_shell_script_is_executable():
    not_executable = [s for s in scripts() if s.endswith(".sh") and not os.access(ROOT / s, os.X_OK)]
    assert not not_executable, not_executable


@pytest.fixture
def checkout(tmp_path):
    """A temp checkout holding a copy of deploy/ and bench/; returns its root."""
    root = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "out")
    for top in ("deploy", "bench"):
        shutil.copytree(ROOT / top, root / top, ignore=ignore, symlinks=True)
    return root


def files_under(root: pathlib.Path) -> set:
    return {p.relative_to(root) for p in root.rglob("*")}


def processes_with(marker: str) -> list[str]:
    """'pid: command line' of every live process whose environment holds the marker."""
    found = []
    needle = f"{MARKER_VAR}={marker}".encode()
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes():
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(f"{proc.name}: {cmd}")
    return found


def run_script(checkout: pathlib.Path, script: str, arg: str) -> subprocess.CompletedProcess:
    """Runs the checkout's copy of the script with one argument; checks that it started nothing
    and finished in time."""
    marker = uuid.uuid4().hex
    env = dict(os.environ, PDSERVE_ROOT=str(checkout), PYTHONDONTWRITEBYTECODE="1",
               PDSERVE_BUILD_DIR=str(checkout / "build"),
               PDSERVE_RUN_DIR=str(checkout / "build" / "run"),
               PDSERVE_MODELS_DIR=str(checkout / "models"),
               PDSERVE_FUZZ_BUILD_DIR=str(checkout / "build-fuzz"),
               BUILD_DIR=str(checkout / "build-bench"), **{MARKER_VAR: marker})
    path = checkout / script
    cmd = [str(path), arg] if script.endswith(".sh") else [sys.executable, str(path), arg]
    before = files_under(checkout)
    start = time.monotonic()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=checkout,
                                stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{script} {arg} ran for over 60 s")
    elapsed = time.monotonic() - start
    left_running = processes_with(marker)
    created = sorted(str(p) for p in files_under(checkout) - before)
    assert not left_running, f"{script} {arg} left processes running: {left_running}"
    assert not created, f"{script} {arg} created files: {created}"
    assert elapsed < TIME_LIMIT_S, f"{script} {arg} took {elapsed:.1f} s"
    return result


@pytest.mark.parametrize("script", scripts())
@pytest.mark.parametrize("arg", ["--help", "-h"])
def test_help_prints_usage_on_stdout_and_starts_nothing(checkout, script, arg):
    r = run_script(checkout, script, arg)
    output = f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.returncode == 0, f"{script} {arg}: exit {r.returncode}\n{output}"
    name = pathlib.Path(script).name
    assert name in r.stdout, f"{script} {arg}: the usage does not name {name}\n{output}"


@pytest.mark.parametrize("script", scripts())
def test_unknown_option_prints_usage_on_stderr_and_exits_2(checkout, script):
    r = run_script(checkout, script, "--no-such-option")
    output = f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.returncode == 2, f"{script}: exit {r.returncode}\n{output}"
    name = pathlib.Path(script).name
    assert name in r.stderr, f"{script}: no usage (naming {name}) on stderr\n{output}"
    assert r.stdout == "", f"{script}: wrote to stdout\n{output}"
