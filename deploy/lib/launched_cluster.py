"""The processes of a cluster deploy/launch.sh started, for tools that must restart one (tests,
bench/load/soak.py): launch.sh writes "NAME PID" lines to RUN_DIR/pids and logs each process's
command line, after a time stamp, as the first line of RUN_DIR/NAME.log. A module, not a script.
"""

from __future__ import annotations

import pathlib
import shlex
import subprocess


def read_pids(run_dir: pathlib.Path) -> dict:
    """{name: pid} of the cluster's processes."""
    return {name: int(pid) for name, pid in
            (line.split() for line in (run_dir / "pids").read_text().splitlines())}


def restart_process(run_dir: pathlib.Path, name: str, who: str) -> subprocess.Popen:
    """Starts process `name` again with the command line launch.sh logged for it, in its own
    session, output appended to its log (after a line saying `who` restarted it). Its line in the
    pid file gets the new pid, so that launch.sh --stop stops it like the others. The caller
    waits for the Popen once the cluster is stopped."""
    log = run_dir / f"{name}.log"
    words = shlex.split(log.read_text().splitlines()[0])[1:]  # drop the time stamp
    if words and words[0] == "setsid":
        words = words[1:]
    with open(log, "a") as out:
        out.write(f"---- restarted by {who}: {shlex.join(words)}\n")
        out.flush()
        proc = subprocess.Popen(words, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pids = read_pids(run_dir)
    pids[name] = proc.pid
    (run_dir / "pids").write_text("".join(f"{n} {p}\n" for n, p in pids.items()))
    return proc
