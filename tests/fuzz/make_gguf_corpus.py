#!/usr/bin/env python3
"""Writes the committed seed corpus for the GGUF fuzz target (tests/fuzz/corpus/gguf/): small
valid files (every metadata type, arrays, each supported tensor type, a custom alignment, v2, a
tiny llama model, the real stories260K header) and invalid ones, one defect each. Deterministic:
rerunning it reproduces the same bytes. Usage: make_gguf_corpus.py [OUT_DIR]"""

import os
import struct
import sys
from pathlib import Path

# Tensor type id -> (block elements, block bytes), as in kernels/tensor_type.cc.
BLOCKS = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
          8: (32, 34), 12: (256, 144), 13: (256, 176), 14: (256, 210)}


def s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def kv(key: str, type_id: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", type_id) + payload


def u32(key, v): return kv(key, 4, struct.pack("<I", v))
def f32(key, v): return kv(key, 6, struct.pack("<f", v))
def string(key, v): return kv(key, 8, s(v))


def array(key, elem_type, fmt, values):
    body = struct.pack("<IQ", elem_type, len(values))
    for v in values:
        body += s(v) if elem_type == 8 else struct.pack("<" + fmt, v)
    return kv(key, 9, body)


def tensor_bytes(type_id, dims):
    n = 1
    for d in dims:
        n *= d
    elems, size = BLOCKS[type_id]
    return n // elems * size


def gguf(kvs, tensors, version=3, alignment=32, kv_count=None, tensor_count=None,
         offsets=None, fill=lambda i: i & 0xFF):
    """tensors: list of (name, type_id, dims); data follow in order, each aligned."""
    out = b"GGUF" + struct.pack("<IQQ", version,
                                len(tensors) if tensor_count is None else tensor_count,
                                len(kvs) if kv_count is None else kv_count)
    out += b"".join(kvs)
    data = b""
    for k, (name, type_id, dims) in enumerate(tensors):
        data += b"\0" * (-len(data) % alignment)
        offset = len(data) if offsets is None else offsets[k]
        size = tensor_bytes(type_id, dims) if type_id in BLOCKS else 16
        size = size if size <= 1 << 16 else 16  # absurd shapes get a token 16 bytes
        data += bytes(fill(i) for i in range(size))
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", type_id, offset)
    if tensors:
        out += b"\0" * (-len(out) % alignment) + data
    return out


ALL_SCALARS = [
    kv("u8", 0, b"\x07"), kv("i8", 1, b"\xf9"), kv("u16", 2, struct.pack("<H", 65000)),
    kv("i16", 3, struct.pack("<h", -3)), u32("u32", 4_000_000_000),
    kv("i32", 5, struct.pack("<i", -5)), f32("f32", 0.5), kv("bool", 7, b"\x01"),
    string("str", "héllo"), kv("u64", 10, struct.pack("<Q", 2**64 - 1)),
    kv("i64", 11, struct.pack("<q", -(2**63))), kv("f64", 12, struct.pack("<d", 3.25)),
]
ARRAYS = [
    array("strs", 8, None, ["<s>", "", "ü"]), array("i32s", 5, "i", [1, -2]),
    array("f32s", 6, "f", [0.25, -1.0]), array("bools", 7, "B", [1, 0]),
    array("u64s", 10, "Q", [0, 2**63]), array("empty", 4, "I", []),
]


def tiny_llama(dim=8, hidden=16, layers=1, heads=2, kv_heads=1, vocab=8):
    kvs = [string("general.architecture", "llama"), u32("llama.block_count", layers),
           u32("llama.context_length", 16), u32("llama.embedding_length", dim),
           u32("llama.feed_forward_length", hidden), u32("llama.attention.head_count", heads),
           u32("llama.attention.head_count_kv", kv_heads),
           f32("llama.attention.layer_norm_rms_epsilon", 1e-5),
           array("tokenizer.ggml.tokens", 8, None, [f"t{i}" for i in range(vocab)])]
    kvd = dim // heads * kv_heads
    t = [("token_embd.weight", 0, [dim, vocab])]
    for i in range(layers):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", 0, [dim]), (p + "attn_q.weight", 0, [dim, dim]),
              (p + "attn_k.weight", 0, [dim, kvd]), (p + "attn_v.weight", 0, [dim, kvd]),
              (p + "attn_output.weight", 0, [dim, dim]), (p + "ffn_norm.weight", 1, [dim]),
              (p + "ffn_gate.weight", 0, [dim, hidden]), (p + "ffn_down.weight", 0, [hidden, dim]),
              (p + "ffn_up.weight", 0, [dim, hidden])]
    t += [("output_norm.weight", 30, [dim])]
    return gguf(kvs, t)


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "corpus" / "gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.gguf"):
        old.unlink()
    every_type = [(f"t{type_id}", type_id, [BLOCKS[type_id][0], 2]) for type_id in sorted(BLOCKS)]
    files = {
        "valid_empty.gguf": gguf([], []),
        "valid_scalars.gguf": gguf(ALL_SCALARS, []),
        "valid_arrays.gguf": gguf(ARRAYS, [("x", 0, [4])]),
        "valid_every_tensor_type.gguf": gguf([string("general.architecture", "llama")], every_type),
        "valid_align64.gguf": gguf([u32("general.alignment", 64)],
                                   [("a", 0, [3]), ("b", 8, [32, 1, 1, 1])], alignment=64),
        "valid_v2.gguf": gguf([u32("k", 1)], [("x", 1, [2, 3])], version=2),
        "valid_tiny_llama.gguf": tiny_llama(),
        "bad_magic.gguf": b"GGUX" + gguf([], [])[4:],
        "bad_version1.gguf": gguf([u32("k", 1)], [], version=1),
        "bad_version4.gguf": gguf([u32("k", 1)], [], version=4),
        "bad_huge_kv_count.gguf": gguf([u32("k", 1)], [], kv_count=2**64 - 1),
        "bad_huge_tensor_count.gguf": gguf([], [("x", 0, [4])], tensor_count=2**40),
        "bad_huge_string.gguf": gguf([kv("k", 8, struct.pack("<Q", 2**62))], []),
        "bad_huge_array.gguf": gguf([kv("k", 9, struct.pack("<IQ", 10, 2**61))], []),
        "bad_array_of_arrays.gguf": gguf([kv("k", 9, struct.pack("<IQ", 9, 1))], []),
        "bad_value_type.gguf": gguf([kv("k", 13, b"\0")], []),
        "bad_bool.gguf": gguf([kv("k", 7, b"\x05")], []),
        "bad_duplicate_key.gguf": gguf([u32("k", 1), u32("k", 2)], []),
        "bad_alignment.gguf": gguf([u32("general.alignment", 48)], [("x", 0, [4])]),
        "bad_unknown_type.gguf": gguf([], [("blk.3.attn_q.weight", 42, [32])]),
        "bad_misaligned.gguf": gguf([], [("x", 0, [8])], offsets=[4]),
        "bad_out_of_range.gguf": gguf([], [("x", 0, [8])], offsets=[2**40]),
        "bad_offset_wraps.gguf": gguf([], [("x", 0, [8])], offsets=[2**64 - 32]),
        "bad_overlap.gguf": gguf([], [("x", 0, [16]), ("y", 0, [8])], offsets=[0, 32]),
        "bad_five_dims.gguf": gguf([], [("x", 0, [1, 1, 1, 1, 1])]),
        "bad_zero_dim.gguf": gguf([], [("x", 0, [4, 0])]),
        "bad_elements_overflow.gguf": gguf([], [("x", 0, [2**32, 2**32])], offsets=[0]),
        "bad_row_not_block.gguf": gguf([], [("q", 8, [48])]),
        "bad_duplicate_tensor.gguf": gguf([], [("x", 0, [4]), ("x", 0, [4])]),
        "bad_truncated_tiny_llama.gguf": tiny_llama()[:-7],
    }
    # The metadata of the real shared model (tokenizer arrays included), without tensor data.
    shared = Path(os.environ.get("PDSERVE_SHARED_DIR", Path(__file__).parents[3] / "shared"))
    stories = shared / "models" / "stories260K.gguf"
    if stories.exists():
        files["stories260K_header.gguf"] = stories.read_bytes()[:14176]
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    total = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} files, {total} bytes, to {out_dir}")


if __name__ == "__main__":
    main()
