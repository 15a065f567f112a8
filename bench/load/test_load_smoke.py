"""bench/load smoke: load_gen.py against a launched tiny cluster (stories260K, 2 + 2 workers),
5 requests at two rates: every request succeeds and the table and the goodput line print."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "cluster"))
import cluster_lib as lib  # noqa: E402


def test_load_gen_prints_its_table(tmp_path):
    lib.require_cluster_binaries()
    model = lib.shared_dir() / "models" / "stories260K.gguf"
    config, router = lib.write_config(tmp_path, "tiny", model, 2, 2)
    with lib.cluster(config, tmp_path / "run"):
        r = subprocess.run([sys.executable, str(HERE / "load_gen.py"), "--router", router,
                            "-n", "5", "--sweep", "5,50", "--prompt-tokens", "8:32",
                            "--output-tokens", "8:24", "--ttft-slo-ms", "60000",
                            "--tpot-slo-ms", "10000"], capture_output=True, text=True,
                           timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(l.split()[:2] == ["rate/s", "ok"] for l in lines), r.stdout
    rows = [l.split() for l in lines if re.match(r"^\s*\d+\.\d\d\s", l)]
    assert [row[0] for row in rows] == ["5.00", "50.00"], r.stdout
    for row in rows:
        assert row[1] == "5/5", r.stdout
        ttft = [float(x) for x in row[3:6]]
        assert 0 < ttft[0] <= ttft[1] <= ttft[2], row
        assert row[-1] == "100.0%", row  # the limits are loose enough for every request
    assert "goodput: 50 req/s" in r.stdout, r.stdout
