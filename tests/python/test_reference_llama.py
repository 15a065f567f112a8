"""Holds the numpy reference (reference_llama.py) itself to independent results, so that it can
serve as the oracle for the engine: llama2.c's greedy goldens for stories260K, reproduced from
the GGUF file. Needs no pdserve binary."""

import json

import numpy as np
import pytest

import pdserve_testlib as lib
import reference_llama as ref

GOLDEN = "golden/stories260K_greedy.jsonl"
BOS = 1  # stories260K ends a story by emitting BOS


def _goldens():
    with open(lib.shared_file(GOLDEN)) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def stories():
    return ref.load_gguf_cached(lib.shared_file("models/stories260K.gguf"))


def test_reads_stories260k_config(stories):
    c = stories.config
    assert (c.n_layers, c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads, c.head_dim) == (5, 64, 172, 8, 4, 8)
    assert (c.vocab_size, c.rope_dim, c.rope_base, c.context_length) == (512, 8, 10000.0, 512)
    assert c.rms_eps == pytest.approx(1e-5)
    # (out_features, in_features), as documented in reference_llama.py.
    assert stories.weight("blk.0.attn_k.weight").shape == (32, 64)
    assert stories.weight("blk.0.ffn_down.weight").shape == (64, 172)


@pytest.mark.parametrize("index", range(len(_goldens())))
def test_greedy_reproduces_golden(stories, index):
    golden = _goldens()[index]
    out = ref.greedy(stories, golden["prompt_ids"], golden["max_new_tokens"], stop_ids=(BOS,))
    assert out == golden["output_ids"], f"prompt {golden['prompt']!r}"
    assert (len(out) == golden["max_new_tokens"]) == (golden["finish"] == "length")


def test_cached_steps_equal_one_pass(stories):
    ids = _goldens()[0]["prompt_ids"] + _goldens()[0]["output_ids"][:20]
    whole = ref.forward(stories, ids)
    cache = ref.KVCache(stories.config, len(ids), stories.dtype)
    steps = [ref.forward(stories, ids[:7], cache)] + [ref.forward(stories, [t], cache) for t in ids[7:]]
    np.testing.assert_allclose(np.vstack(steps), whole, rtol=0, atol=1e-9)


def test_pdlg_round_trip(tmp_path):
    ids = np.array([1, 5, 300], np.int32)
    logits = np.arange(3 * 7, dtype=np.float32).reshape(3, 7) - 2.5
    lib.write_pdlg(tmp_path / "x.pdlg", ids, logits)
    got_ids, got = lib.read_pdlg(tmp_path / "x.pdlg")
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, logits)
    (tmp_path / "bad.pdlg").write_bytes((tmp_path / "x.pdlg").read_bytes()[:-4])
    with pytest.raises(AssertionError, match="bytes, expected"):
        lib.read_pdlg(tmp_path / "bad.pdlg")
