"""Small random-weight GGUF `llama` models, written with the PyPI `gguf` writer, for shape tests.

Weights are scaled so that every activation stays O(1) and the logits are well conditioned
(standard deviation about 1): a float32 engine then matches the float64 reference to ~1e-5.
"""

from __future__ import annotations

import dataclasses

import gguf
import numpy as np

T = gguf.GGMLQuantizationType


@dataclasses.dataclass(frozen=True)
class TinyLlamaSpec:
    dim: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int
    n_layers: int
    vocab_size: int  # at least 259: <unk>, <s>, </s> and the 256 byte tokens
    tied_output: bool  # no output.weight: the classifier is the token embedding
    rope_base: float | None  # None: leave llama.rope.freq_base out (default 10000)
    rms_eps: float | None  # None: leave llama.attention.layer_norm_rms_epsilon out (default 1e-5)
    # tensor name -> storage type; every tensor not named here is F32.
    types: tuple[tuple[str, T], ...] = ()
    # Std of the token embedding's entries; None: 1/sqrt(dim). A small one (untied models only)
    # makes the first RMSNorm's epsilon matter, so that a wrong epsilon shows in the logits.
    embedding_std: float | None = None
    context_length: int = 256

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def _tokenizer_vocab(vocab_size: int):
    """A minimal SentencePiece (`llama`) vocabulary: specials, byte fallbacks, then plain pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    scores = [0.0] * len(tokens)
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < vocab_size:
        piece = "\u2581" + letters[i % 26] + (letters[i // 26 % 26] if i >= 26 else "")
        i += 1
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
        scores.append(-float(len(tokens)))
    return tokens, scores, [int(t) for t in types]


def _store(writer: gguf.GGUFWriter, name: str, values: np.ndarray, qtype: T) -> None:
    values = np.ascontiguousarray(values, dtype=np.float32)
    if qtype == T.F32:
        writer.add_tensor(name, values)
    elif qtype == T.F16:
        writer.add_tensor(name, values.astype(np.float16))
    else:
        writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)


def write_tiny_llama(path, spec: TinyLlamaSpec, seed: int) -> None:
    """Writes a random-weight llama GGUF; 2-D tensors are (out_features, in_features)."""
    if spec.vocab_size < 259:
        raise ValueError("vocab_size must cover the 3 specials and 256 byte tokens")
    rng = np.random.default_rng(seed)
    types = dict(spec.types)
    unknown = set(types) - set(_tensor_names(spec))
    if unknown:
        raise ValueError(f"types for tensors the model does not have: {sorted(unknown)}")

    def matrix(rows, cols):  # entries ~ N(0, 1/cols): a projection keeps unit-scale inputs O(1)
        return rng.standard_normal((rows, cols)) / np.sqrt(cols)

    def norm(n):
        return 1.0 + 0.1 * rng.standard_normal(n)

    q_dim = spec.n_heads * spec.head_dim
    kv_dim = spec.n_kv_heads * spec.head_dim
    tensors = {"token_embd.weight": matrix(spec.vocab_size, spec.dim)}
    if spec.embedding_std is not None:
        if spec.tied_output:
            raise ValueError("embedding_std would rescale a tied model's logits")
        tensors["token_embd.weight"] *= spec.embedding_std * np.sqrt(spec.dim)
    for layer in range(spec.n_layers):
        p = f"blk.{layer}."
        tensors[p + "attn_norm.weight"] = norm(spec.dim)
        tensors[p + "attn_q.weight"] = matrix(q_dim, spec.dim)
        tensors[p + "attn_k.weight"] = matrix(kv_dim, spec.dim)
        tensors[p + "attn_v.weight"] = matrix(kv_dim, spec.dim)
        tensors[p + "attn_output.weight"] = matrix(spec.dim, q_dim)
        tensors[p + "ffn_norm.weight"] = norm(spec.dim)
        tensors[p + "ffn_gate.weight"] = matrix(spec.hidden_dim, spec.dim)
        tensors[p + "ffn_up.weight"] = matrix(spec.hidden_dim, spec.dim)
        tensors[p + "ffn_down.weight"] = matrix(spec.dim, spec.hidden_dim)
    tensors["output_norm.weight"] = norm(spec.dim)
    if not spec.tied_output:  # tied: x · embᵀ, whose entries ~N(0, 1/dim) also give ~N(0, 1) logits
        tensors["output.weight"] = matrix(spec.vocab_size, spec.dim)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.dim)
    writer.add_feed_forward_length(spec.hidden_dim)
    writer.add_block_count(spec.n_layers)
    writer.add_head_count(spec.n_heads)
    writer.add_head_count_kv(spec.n_kv_heads)
    writer.add_rope_dimension_count(spec.head_dim)
    if spec.rope_base is not None:
        writer.add_rope_freq_base(spec.rope_base)
    if spec.rms_eps is not None:
        writer.add_layer_norm_rms_eps(spec.rms_eps)
    tokens, scores, token_types = _tokenizer_vocab(spec.vocab_size)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(token_types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    for name, values in tensors.items():
        _store(writer, name, values, types.get(name, T.F32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _tensor_names(spec: TinyLlamaSpec) -> list[str]:
    names = ["token_embd.weight", "output_norm.weight"]
    if not spec.tied_output:
        names.append("output.weight")
    for layer in range(spec.n_layers):
        names += [f"blk.{layer}.{t}.weight" for t in (
            "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
            "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
    return names
