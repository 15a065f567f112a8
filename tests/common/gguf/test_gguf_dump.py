"""Cross-checks the C++ GGUF reader (through gguf_dump_tool) against the reference Python `gguf`
package (PyPI gguf 0.19.0): files written by gguf.GGUFWriter with every metadata type, arrays and
F32/F16/BF16/Q8_0 tensors must read back identically in both."""

import json
import math
import os
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest

VT = gguf.GGUFValueType
TYPE_NAMES = {
    VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16", VT.UINT32: "u32",
    VT.INT32: "i32", VT.FLOAT32: "f32", VT.BOOL: "bool", VT.STRING: "string", VT.ARRAY: "array",
    VT.UINT64: "u64", VT.INT64: "i64", VT.FLOAT64: "f64",
}


@pytest.fixture(scope="module")
def tool() -> str:
    path = os.environ.get("GGUF_DUMP_TOOL")
    if not path:
        build = os.environ.get("PDSERVE_BUILD_DIR")
        assert build, "set GGUF_DUMP_TOOL or PDSERVE_BUILD_DIR (ctest sets both)"
        path = os.path.join(build, "tests/common/gguf/gguf_dump_tool")
    assert os.access(path, os.X_OK), f"gguf_dump_tool not built: {path}"
    return path


def dump(tool: str, path: Path) -> dict:
    out = subprocess.run([tool, str(path)], capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout.decode("utf-8"))


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def write_rich_file(path: Path, alignment: int | None = None) -> None:
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(str(path), arch="llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 250)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 65000)
    w.add_int16("t.i16", -32000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.1)
    w.add_float64("t.f64", math.pi)
    w.add_bool("t.bool", False)
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -(2**63))
    w.add_string("t.string", "héllo \"quoted\" \\ tab\t")
    # add_string skips an empty value: write it through add_key_value. (The writer refuses
    # empty arrays; the C++ tests cover those.)
    w.add_key_value("t.empty", "", VT.STRING)
    w.add_array("t.strings", ["<s>", "</s>", "ü", ""])
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.floats", [0.5, -1.25, 3.0e-8])
    w.add_array("t.bools", [True, False, True])
    w.add_key_value("t.u8s", [0, 255, 7], VT.ARRAY, sub_type=VT.UINT8)
    w.add_key_value("t.i16s", [-32768, 32767], VT.ARRAY, sub_type=VT.INT16)
    w.add_key_value("t.u64s", [0, 2**63 + 5], VT.ARRAY, sub_type=VT.UINT64)
    w.add_key_value("t.f64s", [1e300, -2.5], VT.ARRAY, sub_type=VT.FLOAT64)

    w.add_tensor("f32.weight", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("f16.weight", rng.standard_normal((4, 64)).astype(np.float16))
    bf16 = gguf.quants.quantize(rng.standard_normal((2, 32)).astype(np.float32),
                                gguf.GGMLQuantizationType.BF16)
    w.add_tensor("bf16.weight", bf16, raw_dtype=gguf.GGMLQuantizationType.BF16)
    q8 = gguf.quants.quantize(rng.standard_normal((6, 96)).astype(np.float32),
                              gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q8_0.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("norm.weight", rng.standard_normal(7).astype(np.float32))
    w.add_tensor("cube.weight", rng.standard_normal((2, 3, 4)).astype(np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def expected_value(field) -> object:
    value = field.contents()
    if field.types[0] == VT.ARRAY and field.types[-1] == VT.FLOAT32:
        return [float(np.float32(v)) for v in value]
    if field.types[0] == VT.FLOAT32:
        return float(np.float32(value))
    return value


def check_against_reference(tool: str, path: Path) -> dict:
    got = dump(tool, path)
    ref = gguf.GGUFReader(str(path))
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert got["version"] == int(ref.fields["GGUF.version"].contents())
    assert sorted(got["metadata"]) == sorted(fields)
    for key, field in fields.items():
        entry = got["metadata"][key]
        assert entry["type"] == TYPE_NAMES[field.types[0]], key
        if field.types[0] == VT.ARRAY:
            assert entry["element_type"] == TYPE_NAMES[field.types[-1]], key
        assert entry["value"] == expected_value(field), key

    raw = path.read_bytes()
    assert [t["name"] for t in got["tensors"]] == [t.name for t in ref.tensors]
    for t, r in zip(got["tensors"], ref.tensors):
        assert t["type_id"] == int(r.tensor_type), t["name"]
        assert t["type"] == r.tensor_type.name.lower().replace("q4_k", "q4_K"), t["name"]
        assert t["dims"] == [int(d) for d in r.shape], t["name"]
        assert got["data_section_offset"] + t["offset"] == r.data_offset, t["name"]
        assert t["n_bytes"] == r.n_bytes, t["name"]
        assert t["fnv1a64"] == fnv1a64(raw[r.data_offset:r.data_offset + r.n_bytes]), t["name"]
    return got


def test_rich_file_matches_reference(tool, tmp_path):
    path = tmp_path / "rich.gguf"
    write_rich_file(path)
    got = check_against_reference(tool, path)
    assert got["alignment"] == 32
    assert got["metadata"]["t.empty"] == {"type": "string", "value": ""}
    assert {t["type"] for t in got["tensors"]} == {"f32", "f16", "bf16", "q8_0"}
    cube = next(t for t in got["tensors"] if t["name"] == "cube.weight")
    assert cube["dims"] == [4, 3, 2]  # ggml order: innermost first
    q8 = next(t for t in got["tensors"] if t["name"] == "q8_0.weight")
    assert q8["dims"] == [96, 6] and q8["n_bytes"] == 6 * 3 * 34


def test_custom_alignment(tool, tmp_path):
    path = tmp_path / "aligned.gguf"
    write_rich_file(path, alignment=256)
    got = check_against_reference(tool, path)
    assert got["alignment"] == 256
    assert got["data_section_offset"] % 256 == 0
    assert all(t["offset"] % 256 == 0 for t in got["tensors"])


def test_shared_stories260k_matches_reference(tool):
    shared = os.environ.get("PDSERVE_SHARED_DIR")
    assert shared, "PDSERVE_SHARED_DIR is not set (ctest sets it)"
    path = Path(shared) / "models" / "stories260K.gguf"
    assert path.exists(), f"missing {path}: ../shared must sit beside the checkout"
    check_against_reference(tool, path)


def test_version_2_reads_and_version_1_is_rejected(tool, tmp_path):
    path = tmp_path / "v.gguf"
    write_rich_file(path)
    data = bytearray(path.read_bytes())
    data[4:8] = (2).to_bytes(4, "little")  # v2 and v3 share the layout (little-endian)
    path.write_bytes(data)
    assert dump(tool, path)["version"] == 2
    data[4:8] = (1).to_bytes(4, "little")
    path.write_bytes(data)
    out = subprocess.run([tool, str(path)], capture_output=True, check=False)
    assert out.returncode == 1
    assert f"{path}: GGUF version 1 is not supported" in out.stderr.decode()


def test_truncated_file_is_an_error_naming_it(tool, tmp_path):
    path = tmp_path / "rich.gguf"
    write_rich_file(path)
    data = path.read_bytes()
    for size in (3, 23, 100, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut{size}.gguf"
        cut.write_bytes(data[:size])
        out = subprocess.run([tool, str(cut)], capture_output=True, check=False)
        assert out.returncode == 1, size
        assert str(cut) in out.stderr.decode(), size
