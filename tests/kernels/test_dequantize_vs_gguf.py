"""Dequantization in pdserve_kernels_cpu is bit for bit the `gguf` package's (gguf.quants).

Random valid blocks of every supported type (random bytes, with each f16 scale field set to a
random finite f16) go through pdserve-dequantize-tool with every instruction-set variant this CPU
runs; the f32 results must have exactly the bits of gguf.quants.dequantize. Also checks the
F32ToF16 / F32ToBf16 converters against numpy and gguf.
"""

import os
import subprocess
import tempfile

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf import quants

TOOL = os.path.join(os.environ.get("PDSERVE_BUILD_DIR", "build"), "tests", "kernels",
                    "pdserve-dequantize-tool")

# Byte offsets of the f16 scale fields (d, m or dmin) inside one block of each type.
SCALE_OFFSETS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
TYPE_NAMES = {T.F32: "f32", T.F16: "f16", T.BF16: "bf16", T.Q4_0: "q4_0", T.Q4_1: "q4_1",
              T.Q5_0: "q5_0", T.Q5_1: "q5_1", T.Q8_0: "q8_0", T.Q4_K: "q4_K", T.Q5_K: "q5_K",
              T.Q6_K: "q6_K"}
ISAS = ["scalar", "auto", "avx2", "avx512"]


def random_finite_f16_bits(rng, n):
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    infinite_or_nan = (bits & 0x7C00) == 0x7C00
    bits[infinite_or_nan] &= 0xBFFF  # clear the top exponent bit: a finite value
    return bits


def random_blocks(qtype, n_blocks, rng):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    # Any bits at all for f32 (NaNs survive a copy); for f16 and bf16 also every 16-bit pattern.
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qtype in (T.F16, T.BF16):
        every_half = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(-1, 2)
        blocks = np.concatenate([every_half, blocks])
    for offset in SCALE_OFFSETS.get(qtype, []):
        scales = random_finite_f16_bits(rng, blocks.shape[0])
        blocks[:, offset:offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    return np.ascontiguousarray(blocks)


def run_tool(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True)


def test_tool_exists():
    assert os.path.isfile(TOOL), f"{TOOL} is not built (set PDSERVE_BUILD_DIR)"


@pytest.mark.parametrize("qtype", list(TYPE_NAMES), ids=lambda t: TYPE_NAMES[t])
def test_dequantize_matches_gguf_bitwise(qtype, tmp_path):
    rng = np.random.default_rng(int(qtype) + 1000)
    n_blocks = 4096 if GGML_QUANT_SIZES[qtype][0] == 1 else 1500
    blocks = random_blocks(qtype, n_blocks, rng)
    want = quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32, copy=False)
    want_bits = want.reshape(-1).view(np.uint32)
    src = tmp_path / "blocks.bin"
    blocks.tofile(src)
    ran = []
    for isa in ISAS:
        out = tmp_path / f"out-{isa}.f32"
        result = run_tool("dequantize", TYPE_NAMES[qtype], isa, str(src), str(out))
        if result.returncode == 2 and isa in ("avx2", "avx512") and "lacks" in result.stderr:
            continue  # this CPU cannot run that variant
        assert result.returncode == 0, result.stderr
        got_bits = np.fromfile(out, dtype=np.uint32)
        assert got_bits.shape == want_bits.shape, isa
        diff = np.nonzero(got_bits != want_bits)[0]
        assert diff.size == 0, (
            f"{TYPE_NAMES[qtype]} {isa}: {diff.size} elements differ, first at {diff[0]}: "
            f"got {got_bits[diff[0]]:#010x} want {want_bits[diff[0]]:#010x}")
        ran.append(isa)
    assert "scalar" in ran and "auto" in ran


def special_and_random_floats(rng):
    specials = np.array([0.0, -0.0, 1.0, 65504.0, 65519.0, 65520.0, 1e-8, 2.0 ** -25, 2.0 ** -24,
                         2.0 ** -14, 6.1e-5, np.inf, -np.inf, 3.0e38, 1.0 + 2.0 ** -11,
                         1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8],
                        dtype=np.float32)
    random_bits = rng.integers(0, 1 << 32, size=300000, dtype=np.uint64).astype(np.uint32)
    near_half_range = (rng.standard_normal(300000) * 10.0 ** rng.uniform(-9, 5, 300000))
    return np.concatenate([specials, random_bits.view(np.float32),
                           near_half_range.astype(np.float32)])


def check_converter(command, values, want_bits, tmp_path):
    src, out = tmp_path / "in.f32", tmp_path / "out.bin"
    values.tofile(src)
    result = run_tool(command, str(src), str(out))
    assert result.returncode == 0, result.stderr
    got_bits = np.fromfile(out, dtype=np.uint16)
    nan_in = np.isnan(values)
    # A NaN must stay a NaN; its payload is not part of the contract.
    got_nan = ((got_bits & 0x7C00) == 0x7C00) & ((got_bits & 0x03FF) != 0) if command == "to-f16" \
        else ((got_bits & 0x7F80) == 0x7F80) & ((got_bits & 0x007F) != 0)
    assert np.array_equal(got_nan, nan_in)
    diff = np.nonzero((got_bits != want_bits) & ~nan_in)[0]
    assert diff.size == 0, (f"{command}: {diff.size} differ, first {values[diff[0]]!r}: "
                            f"got {got_bits[diff[0]]:#06x} want {want_bits[diff[0]]:#06x}")


def test_f32_to_f16_rounds_like_numpy(tmp_path):
    values = special_and_random_floats(np.random.default_rng(1))
    with np.errstate(over="ignore"):
        want = values.astype(np.float16).view(np.uint16)
    check_converter("to-f16", values, want, tmp_path)


def test_f32_to_bf16_rounds_like_gguf(tmp_path):
    values = special_and_random_floats(np.random.default_rng(2))
    want = quants.quantize(values.reshape(1, -1), T.BF16).reshape(-1).view(np.uint16)
    check_converter("to-bf16", values, want, tmp_path)
