"""pdserve-generate as a user runs it: the text on stdout, metrics on stderr, clear errors."""
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

BUILD = Path(os.environ["PDSERVE_BUILD_DIR"])
SHARED = Path(os.environ["PDSERVE_SHARED_DIR"])
GENERATE = BUILD / "cli" / "pdserve-generate"
BIN = SHARED / "models" / "stories260K.bin"
TOK = SHARED / "models" / "tok512.bin"
GGUF = SHARED / "models" / "stories260K.gguf"


def run(*args, timeout=120):
    return subprocess.run([str(GENERATE), *map(str, args)], capture_output=True, timeout=timeout)


def goldens():
    with open(SHARED / "golden" / "stories260K_greedy.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_inputs_exist():
    for path in (GENERATE, BIN, TOK, GGUF):
        assert path.exists(), f"missing {path}"


@pytest.mark.parametrize("model_args", [["--model", BIN, "--tokenizer", TOK], ["--model", GGUF]])
def test_stdout_is_exactly_the_generated_text(model_args):
    for golden in goldens()[:3]:
        result = run(*model_args, "--prompt", golden["prompt"],
                     "--max-tokens", golden["max_new_tokens"], "--temperature", "0")
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode() == golden["continuation"]
        stderr = result.stderr.decode()
        assert "TTFT" in stderr and "TPOT" in stderr and "tokens/s" in stderr
        assert "bytes/token" in stderr  # the KV memory formula at start-up


def test_stop_string_ends_generation_without_emitting_it():
    golden = goldens()[0]
    text = golden["continuation"]
    stop = "Lily"
    assert stop in text
    result = run("--model", GGUF, "--prompt", golden["prompt"], "--max-tokens",
                 golden["max_new_tokens"], "--stop", stop)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == text[: text.index(stop)]
    assert "finish: stop" in result.stderr.decode()


def test_ignore_eos_generates_exactly_max_tokens():
    result = run("--model", GGUF, "--prompt", "Once upon a time", "--max-tokens", 300,
                 "--ignore-eos")
    assert result.returncode == 0, result.stderr.decode()
    assert "generated 300 tokens" in result.stderr.decode()


def test_same_seed_same_text_and_seeds_differ():
    args = ["--model", GGUF, "--prompt", "Once upon a time", "--max-tokens", 40,
            "--temperature", "1.0", "--top-p", "0.95", "--top-k", "40"]
    a = run(*args, "--seed", 11)
    b = run(*args, "--seed", 11)
    c = run(*args, "--seed", 12)
    assert a.returncode == b.returncode == c.returncode == 0, a.stderr.decode()
    assert a.stdout == b.stdout
    assert a.stdout != c.stdout


def write_gguf_with_unknown_tensor_type(path):
    def gguf_string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    header = b"GGUF" + struct.pack("<IQQ", 3, 1, 1)
    kv = gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")
    tensor = gguf_string("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 32, 4)
    tensor += struct.pack("<I", 42) + struct.pack("<Q", 0)
    body = header + kv + tensor
    body += b"\0" * ((-len(body)) % 32) + b"\0" * 4096
    path.write_bytes(body)


def bad_cases(tmp_path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(GGUF.read_bytes()[:5000])
    unknown_type = tmp_path / "unknown_type.gguf"
    write_gguf_with_unknown_tensor_type(unknown_type)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x07" * 100)
    ok = ["--model", GGUF, "--prompt", "Hello"]
    return {
        "missing model": (["--model", tmp_path / "nope.gguf", "--prompt", "x"], "nope.gguf"),
        "truncated gguf": (["--model", corrupt, "--prompt", "x"], "corrupt.gguf"),
        "garbage file": (["--model", garbage, "--tokenizer", TOK, "--prompt", "x"], "garbage.bin"),
        "unknown tensor type": (["--model", unknown_type, "--prompt", "x"], "42"),
        "no tokenizer for .bin": (["--model", BIN, "--prompt", "x"], "tokenizer"),
        "prompt too long": ([*ok, "--max-tokens", 600], "context"),
        "max tokens zero": ([*ok, "--max-tokens", 0], "max tokens"),
        "negative temperature": ([*ok, "--temperature", "-1"], "temperature"),
        "nan temperature": ([*ok, "--temperature", "nan"], "temperature"),
        "top-p zero": ([*ok, "--top-p", "0"], "top_p"),
        "top-p above one": ([*ok, "--top-p", "1.5"], "top_p"),
        "negative top-k": ([*ok, "--top-k", "-1"], "top_k"),
        "zero repetition penalty": ([*ok, "--repetition-penalty", "0"], "repetition_penalty"),
        "zero threads": ([*ok, "--threads", "0"], "threads"),
        "unknown kernels": ([*ok, "--kernels", "sse9"], "sse9"),
        "unknown device": ([*ok, "--device", "gpu"], "gpu"),
        "not a number": ([*ok, "--max-tokens", "ten"], "max-tokens"),
        "unknown flag": ([*ok, "--bogus"], "bogus"),
        "empty prompt": (["--model", GGUF, "--prompt", ""], "empty"),
        "chat on a model without template": (["--model", BIN, "--tokenizer", TOK, "--chat",
                                              "--prompt", "hi"], "template"),
    }


def test_bad_input_is_a_clear_error(tmp_path):
    for name, (args, expected) in bad_cases(tmp_path).items():
        result = run(*args)
        stderr = result.stderr.decode(errors="replace")
        assert result.returncode != 0, f"{name}: exit 0"
        assert result.returncode < 128, f"{name}: crashed ({result.returncode}): {stderr}"
        assert expected.lower() in stderr.lower(), f"{name}: {stderr!r} lacks {expected!r}"
        assert result.stdout == b"", f"{name}: printed {result.stdout!r}"


def gpu_present():
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def test_device_cuda_runs_or_says_why_not():
    result = run("--model", BIN, "--tokenizer", TOK, "--prompt", "Once upon a time",
                 "--max-tokens", "20", "--temperature", "0", "--device", "cuda")
    stderr = result.stderr.decode(errors="replace")
    if gpu_present() and "no CUDA backend" not in stderr:
        assert result.returncode == 0, stderr
        assert "device: cuda" in stderr
        return
    # No GPU here (CI), or a build without CUDA: a clear error, no output, no crash.
    assert 0 < result.returncode < 128, stderr
    assert ("no usable CUDA device" in stderr) or ("no CUDA backend" in stderr), stderr
    assert result.stdout == b""


def test_device_cpu_is_the_default_and_says_so():
    result = run("--model", GGUF, "--prompt", "Hello", "--max-tokens", "2", "--device", "cpu")
    assert result.returncode == 0, result.stderr.decode()
    assert "device: cpu" in result.stderr.decode()
    default = run("--model", GGUF, "--prompt", "Hello", "--max-tokens", "2")
    assert "device: cpu" in default.stderr.decode()


def test_invalid_utf8_prompt_is_a_clear_error():
    result = subprocess.run([str(GENERATE).encode(), b"--model", str(GGUF).encode(),
                             b"--prompt", b"abc\xff\xfe"], capture_output=True, timeout=60)
    assert 0 < result.returncode < 128
    assert b"utf-8" in result.stderr.lower()
