"""pdserve-logits on small random-weight GGUF llama models whose shapes are unlike stories260K's,
against the numpy reference.

Tolerance: 1e-3 absolute on every logit at every position, for both kernel sets. Both sides
multiply the same stored weights (F16 and Q8_0 dequantize exactly), and the engine's matmul
keeps activations in f32 (kernels/cpu/matmul.h), so only f32 rounding separates it from the
float64 reference: ~1e-5 here, with logits of standard deviation ~1.
"""

import dataclasses

import numpy as np
import pytest

import pdserve_testlib as lib
import reference_llama as ref
import tiny_gguf
from tiny_gguf import T, TinyLlamaSpec

TOLERANCE = 1e-3

SPECS = {
    # GQA 3 (6 q heads on 2 kv heads), head_dim 16, untied classifier, rope base 500000,
    # eps 1e-6 made visible by a small embedding.
    "gqa3_untied": TinyLlamaSpec(
        dim=96, n_heads=6, n_kv_heads=2, hidden_dim=160, n_layers=3, vocab_size=300,
        tied_output=False, rope_base=500000.0, rms_eps=1e-6, embedding_std=0.004,
        types=(("blk.1.attn_v.weight", T.F16), ("blk.2.ffn_up.weight", T.Q8_0),
               ("output.weight", T.F16))),
    # GQA 1 (4 heads, 4 kv heads), tied classifier stored Q8_0 (as SmolLM2's), rope base and eps
    # left out of the file (defaults 10000 and 1e-5).
    "mha_tied_defaults": TinyLlamaSpec(
        dim=64, n_heads=4, n_kv_heads=4, hidden_dim=96, n_layers=2, vocab_size=320,
        tied_output=True, rope_base=None, rms_eps=None,
        types=(("token_embd.weight", T.Q8_0), ("blk.0.attn_q.weight", T.F16),
               ("blk.0.attn_k.weight", T.Q8_0), ("blk.0.ffn_gate.weight", T.F16),
               ("blk.1.ffn_down.weight", T.Q8_0))),
    # Multi-query: 8 heads of 8 dims on a single kv head.
    "mqa_head_dim8": TinyLlamaSpec(
        dim=64, n_heads=8, n_kv_heads=1, hidden_dim=64, n_layers=1, vocab_size=259,
        tied_output=False, rope_base=10000.0, rms_eps=1e-5),
}

KERNELS = [("scalar", 1), ("auto", 2)]  # (--kernels, --threads)


def _ids(vocab_size: int) -> list[int]:
    """37 positions (more than two 16-token KV blocks), both ends of the vocabulary, repeats."""
    rng = np.random.default_rng(7)
    ids = [1, 0, vocab_size - 1] + rng.integers(0, vocab_size, 30).tolist() + [5, 5, 5, 2]
    return ids


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_gguf")
    out = {}
    for seed, (name, spec) in enumerate(SPECS.items()):
        path = folder / f"{name}.gguf"
        tiny_gguf.write_tiny_llama(path, spec, seed=100 + seed)
        out[name] = path
    return out


@pytest.mark.parametrize("name", SPECS)
def test_reference_reads_the_spec(models, name):
    spec = SPECS[name]
    c = ref.load_gguf_cached(models[name]).config
    assert (c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim, c.n_layers, c.vocab_size) == (
        spec.dim, spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.hidden_dim, spec.n_layers,
        spec.vocab_size)
    assert c.rope_base == (spec.rope_base or 10000.0)
    assert c.rms_eps == pytest.approx(spec.rms_eps or 1e-5)


def test_test_can_see_rope_base_and_eps(models):
    """The tolerance is far below what a wrong rope base or epsilon would cost."""
    model = ref.load_gguf_cached(models["gqa3_untied"])
    ids = _ids(model.config.vocab_size)
    good = ref.forward(model, ids)
    for change in ({"rope_base": 10000.0}, {"rms_eps": 1e-5}):
        wrong = ref.LlamaModel(dataclasses.replace(model.config, **change), model.tensors, model.dtype)
        assert np.abs(ref.forward(wrong, ids) - good).max() > 100 * TOLERANCE, change


@pytest.mark.parametrize("kernels,threads", KERNELS)
@pytest.mark.parametrize("name", SPECS)
def test_engine_matches_reference(models, name, kernels, threads, tmp_path):
    model = ref.load_gguf_cached(models[name])
    ids = _ids(model.config.vocab_size)
    got_ids, got = lib.run_logits(tmp_path, models[name], ids=ids, kernels=kernels, threads=threads)
    assert got_ids.tolist() == ids
    expected = ref.forward(model, ids)
    result = lib.compare_logits(expected, got, min_top2_gap=0.0)
    print(f"{name} --kernels {kernels}: max |logit diff| {result['max_abs_diff']:.2e} "
          f"(position {result['worst_position']})")
    assert result["max_abs_diff"] <= TOLERANCE, result
