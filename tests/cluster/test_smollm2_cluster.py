"""SmolLM2-135M-Instruct on a launched 1 prefill + 1 decode cluster: a chat prompt through the
router gives exactly pdserve-generate's answer (greedy), so disaggregation is lossless on the
real model too, whichever transport moves the KV (grpc, shm, tcp)."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402


@pytest.mark.parametrize("transport", ["grpc", "shm", "tcp"])
def test_chat_answer_equals_one_process(tmp_path, transport):
    lib.require_cluster_binaries()
    model = lib.run_fetch_model()
    config, router = lib.write_config(tmp_path, "smollm2", model, 1, 1,
                                      {"kv_pool_tokens": 4096, "kv_transport": transport})
    prompt, n = "What is the capital of France? Answer in one sentence.", 48
    with lib.cluster(config, tmp_path / "run"):
        r = lib.client(router, ["--chat", "--prompt", prompt, "--max-tokens", n], timeout_s=300)
        assert r.returncode == 0, r.stderr
        reference = lib.generate_reference(model, prompt, n, chat=True, timeout_s=300)
        assert r.stdout == reference
        assert "Paris" in r.stdout
        assert "TTFT" in r.stderr and "finish:" in r.stderr
        stats = lib.stats(router)
        assert [t.transport for t in stats.kv_transfers] == [transport], stats.kv_transfers
