"""deploy/demo.sh with its cluster already running (a tiny stories260K cluster standing in for
the default one through PDSERVE_CLUSTER_CONFIG): it sends its prompt to that cluster and leaves
it running; it never stops a cluster it did not launch."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
import cluster_lib as lib  # noqa: E402


def test_demo_uses_the_running_cluster_and_leaves_it_running(tmp_path):
    lib.require_cluster_binaries()
    config, router = lib.write_config(tmp_path, "tiny", lib.stories_model(), 1, 1)
    run_dir = tmp_path / "run"
    with lib.cluster(config, run_dir) as pids:
        env = dict(os.environ, PDSERVE_BUILD_DIR=str(lib.build_dir()),
                   PDSERVE_CLUSTER_CONFIG=str(config), PDSERVE_RUN_DIR=str(run_dir))
        r = subprocess.run(["bash", str(lib.root_dir() / "deploy" / "demo.sh"), "Once upon"],
                           capture_output=True, text=True, env=env, timeout=120)
        # The request itself fails on stories260K (no chat template, and demo.sh asks --chat);
        # what matters here is which cluster served it and that it is still up.
        assert f"using the cluster already running at {router}" in r.stdout, r.stdout + r.stderr
        assert "chat template" in r.stderr or r.returncode == 0, r.stdout + r.stderr
        dead = {name: pid for name, pid in pids.items() if not lib.alive(pid)}
        assert not dead, f"demo.sh stopped the running cluster: {dead}\n{r.stdout}{r.stderr}"
        assert (run_dir / "pids").exists(), "demo.sh removed the running cluster's pid file"
        listed = lib.client(router, ["--list-workers"], timeout_s=30)
        assert listed.returncode == 0 and listed.stdout.count("healthy") == 2, listed.stdout
