"""An independent numpy reference of the LLaMA forward pass for GGUF `llama` models.

It shares no code with the C++ engine: weights are read and dequantized by the PyPI `gguf`
package, and the math is written out plainly, one layer loop, in float64 by default. It is the
oracle the engine's logits are compared against (tests/python/test_*_reference.py,
test_tiny_gguf_shapes.py), and it is itself held to llama2.c's greedy goldens
(test_reference_llama.py).

Conventions (checked against stories260K.gguf):
- A 2-D GGUF tensor with ggml shape [ne0, ne1] comes out of GGUFReader, after dequantize, as a
  numpy (ne1, ne0) array: (out_features, in_features), like a PyTorch nn.Linear weight, so a
  projection is `x @ w.T`.
- RoPE rotates interleaved pairs (x[2i], x[2i+1]) of each head, as for every GGUF `llama` model
  (the converters permute Q and K so that this equals Hugging Face's rotate-half form).
"""

from __future__ import annotations

import dataclasses
import os

import gguf
import numpy as np


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    n_layers: int
    dim: int
    hidden_dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    rope_dim: int  # leading dimensions of each head that RoPE rotates
    rope_base: float
    rms_eps: float
    context_length: int


@dataclasses.dataclass
class LlamaModel:
    config: LlamaConfig
    # name -> float32 array; matrices (out_features, in_features), norms (dim,).
    tensors: dict[str, np.ndarray]
    dtype: type  # the compute type: float64 (default) or float32

    def weight(self, name: str) -> np.ndarray:
        return self.tensors[name]

    @property
    def output_weight(self) -> np.ndarray:
        """(vocab, dim): the classifier, or the token embedding when the file has none (tied)."""
        return self.tensors.get("output.weight", self.tensors["token_embd.weight"])


def _field_value(reader: gguf.GGUFReader, key: str, default=None):
    field = reader.get_field(key)
    if field is None:
        return default
    return field.contents()


def read_config(reader: gguf.GGUFReader, tensors: dict[str, np.ndarray]) -> LlamaConfig:
    arch = _field_value(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"general.architecture is {arch!r}; this reference handles 'llama' only")

    def key(name: str, default=None):
        value = _field_value(reader, f"llama.{name}", default)
        if value is None:
            raise ValueError(f"missing metadata llama.{name}")
        return value

    dim = int(key("embedding_length"))
    n_heads = int(key("attention.head_count"))
    n_kv_heads = int(key("attention.head_count_kv", n_heads))
    head_dim = int(key("attention.key_length", dim // n_heads))
    return LlamaConfig(
        n_layers=int(key("block_count")),
        dim=dim,
        hidden_dim=int(key("feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        vocab_size=tensors["token_embd.weight"].shape[0],
        rope_dim=int(key("rope.dimension_count", head_dim)),
        rope_base=float(key("rope.freq_base", 10000.0)),
        rms_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
        context_length=int(key("context_length", 2048)),
    )


def load_gguf(path: str | os.PathLike, dtype=np.float64) -> LlamaModel:
    """Reads and dequantizes every tensor of a GGUF `llama` file (float32 in memory)."""
    reader = gguf.GGUFReader(path)
    tensors = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        expected = tuple(int(n) for n in reversed(t.shape))  # ggml [ne0, ne1] -> (ne1, ne0)
        if values.shape != expected:
            raise ValueError(f"tensor {t.name!r}: dequantized to {values.shape}, expected {expected}")
        tensors[t.name] = values
    config = read_config(reader, tensors)
    if config.n_heads % config.n_kv_heads != 0:
        raise ValueError(f"{config.n_heads} heads do not group evenly over {config.n_kv_heads} kv heads")
    if config.rope_dim % 2 or config.rope_dim > config.head_dim:
        raise ValueError(f"rope.dimension_count {config.rope_dim} does not fit head_dim {config.head_dim}")
    return LlamaModel(config, tensors, dtype)


_MODEL_CACHE: dict[tuple, LlamaModel] = {}


def load_gguf_cached(path: str | os.PathLike, dtype=np.float64) -> LlamaModel:
    """load_gguf, once per (file, version, dtype) per process: dequantizing SmolLM2 takes seconds."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, np.dtype(dtype).name)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_gguf(path, dtype)
    return _MODEL_CACHE[key]


class KVCache:
    """Keys and values of the positions seen so far, per layer: (n_kv_heads, max_tokens, head_dim)."""

    def __init__(self, config: LlamaConfig, max_tokens: int, dtype):
        shape = (config.n_layers, config.n_kv_heads, max_tokens, config.head_dim)
        self.k = np.zeros(shape, dtype)
        self.v = np.zeros(shape, dtype)
        self.n_tokens = 0
        self.max_tokens = max_tokens


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x (n, dim) / sqrt(mean(x^2) + eps) * weight (dim,)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x: np.ndarray, positions: np.ndarray, rope_dim: int, base: float) -> np.ndarray:
    """Rotates interleaved pairs (x[..., 2i], x[..., 2i+1]), i < rope_dim/2, by position * theta_i.

    x: (n_tokens, n_heads, head_dim); positions: (n_tokens,); theta_i = base^(-2i / rope_dim).
    """
    half = rope_dim // 2
    theta = base ** (-np.arange(half, dtype=np.float64) * 2.0 / rope_dim)  # (half,)
    angle = positions.astype(np.float64)[:, None] * theta[None, :]  # (n_tokens, half)
    cos = np.cos(angle)[:, None, :].astype(x.dtype)  # (n_tokens, 1, half)
    sin = np.sin(angle)[:, None, :].astype(x.dtype)
    out = x.copy()
    even = x[..., 0:rope_dim:2]  # (n_tokens, n_heads, half)
    odd = x[..., 1:rope_dim:2]
    out[..., 0:rope_dim:2] = even * cos - odd * sin
    out[..., 1:rope_dim:2] = even * sin + odd * cos
    return out


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def forward(model: LlamaModel, ids, cache: KVCache | None = None) -> np.ndarray:
    """Logits (len(ids), vocab) at every position of `ids`, which continue `cache` (positions
    cache.n_tokens, cache.n_tokens + 1, ...); without a cache, `ids` is the whole sequence.
    The cache, when given, is extended with `ids`."""
    cfg = model.config
    dt = model.dtype
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    if n == 0:
        raise ValueError("no tokens")
    if ids.min() < 0 or ids.max() >= cfg.vocab_size:
        raise ValueError(f"token id out of [0, {cfg.vocab_size})")
    if cache is None:
        cache = KVCache(cfg, n, dt)
    start = cache.n_tokens
    end = start + n
    if end > cache.max_tokens:
        raise ValueError(f"{end} tokens exceed the cache's {cache.max_tokens}")
    positions = np.arange(start, end)
    group = cfg.n_heads // cfg.n_kv_heads  # q heads per kv head
    scale = 1.0 / np.sqrt(cfg.head_dim)
    # Causal mask over [0, end): query at position start+i sees keys at positions <= start+i.
    mask = np.arange(end)[None, :] > positions[:, None]  # (n, end)

    def linear(x, name):  # x (n, in) · w (out, in)ᵀ -> (n, out)
        return x @ model.weight(name).T.astype(dt, copy=False)

    x = model.weight("token_embd.weight")[ids].astype(dt)  # (n, dim)
    for layer in range(cfg.n_layers):
        p = f"blk.{layer}."
        h = rms_norm(x, model.weight(p + "attn_norm.weight").astype(dt), cfg.rms_eps)  # (n, dim)
        q = linear(h, p + "attn_q.weight").reshape(n, cfg.n_heads, cfg.head_dim)
        k = linear(h, p + "attn_k.weight").reshape(n, cfg.n_kv_heads, cfg.head_dim)
        v = linear(h, p + "attn_v.weight").reshape(n, cfg.n_kv_heads, cfg.head_dim)
        q = rope(q, positions, cfg.rope_dim, cfg.rope_base)
        k = rope(k, positions, cfg.rope_dim, cfg.rope_base)
        cache.k[layer, :, start:end] = k.transpose(1, 0, 2)  # (n_kv_heads, n, head_dim)
        cache.v[layer, :, start:end] = v.transpose(1, 0, 2)

        att_out = np.empty((n, cfg.n_heads, cfg.head_dim), dt)
        for head in range(cfg.n_heads):
            kv_head = head // group
            keys = cache.k[layer, kv_head, :end]  # (end, head_dim)
            values = cache.v[layer, kv_head, :end]  # (end, head_dim)
            scores = q[:, head, :] @ keys.T * scale  # (n, end)
            scores = np.where(mask, -np.inf, scores)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            weights = scores / scores.sum(axis=-1, keepdims=True)
            att_out[:, head, :] = weights @ values  # (n, head_dim)
        x = x + linear(att_out.reshape(n, cfg.n_heads * cfg.head_dim), p + "attn_output.weight")

        h = rms_norm(x, model.weight(p + "ffn_norm.weight").astype(dt), cfg.rms_eps)
        gate = linear(h, p + "ffn_gate.weight")  # (n, hidden_dim)
        up = linear(h, p + "ffn_up.weight")
        x = x + linear(silu(gate) * up, p + "ffn_down.weight")  # (n, dim)

    cache.n_tokens = end
    x = rms_norm(x, model.weight("output_norm.weight").astype(dt), cfg.rms_eps)
    return x @ model.output_weight.T.astype(dt, copy=False)  # (n, vocab)


def greedy(model: LlamaModel, prompt_ids, max_new_tokens: int, stop_ids=()) -> list[int]:
    """Greedy continuation of prompt_ids: up to max_new_tokens ids, stopping before a stop id."""
    cache = KVCache(model.config, len(prompt_ids) + max_new_tokens, model.dtype)
    logits = forward(model, prompt_ids, cache)[-1]
    out = []
    while len(out) < max_new_tokens:
        token = int(np.argmax(logits))
        if token in stop_ids:
            break
        out.append(token)
        logits = forward(model, [token], cache)[-1]
    return out
