"""Helpers for pdserve's Python tests: where things are, running our binaries, reading their output.

ctest sets PDSERVE_ROOT, PDSERVE_BUILD_DIR and PDSERVE_SHARED_DIR (cmake/PdserveTesting.cmake).
Run by hand, the defaults are this checkout, its build/ folder and ../shared. A missing binary,
model or golden file is a failure with a message, never a skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pathlib
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import types

import numpy as np

_THIS_DIR = pathlib.Path(__file__).resolve().parent


def root_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("PDSERVE_ROOT") or _THIS_DIR.parent.parent)


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("PDSERVE_BUILD_DIR") or root_dir() / "build")


def shared_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("PDSERVE_SHARED_DIR") or root_dir().parent / "shared")


def shared_file(relative: str) -> pathlib.Path:
    """A file under ../shared (models/, golden/); fails when it is missing."""
    path = shared_dir() / relative
    if not path.is_file():
        raise AssertionError(f"{path} is missing (PDSERVE_SHARED_DIR={shared_dir()})")
    return path


def binary(relative: str, build: pathlib.Path | None = None) -> pathlib.Path:
    """A built binary, e.g. 'tests/engine/pdserve-logits', under `build` (default build_dir();
    a test may assemble its own, e.g. with stand-ins); fails when it is not there."""
    build = pathlib.Path(build) if build is not None else build_dir()
    path = build / relative
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise AssertionError(f"{path} does not exist or is not executable: build it first "
                             f"(PDSERVE_BUILD_DIR={build})")
    return path


def run_binary(args: list, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    """Runs a command to completion; fails, with its stderr, on a timeout or a non-zero exit."""
    args = [str(a) for a in args]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"timed out after {timeout_s} s: {' '.join(args)}\n"
                             f"stderr: {e.stderr}") from None
    if result.returncode != 0:
        raise AssertionError(f"exit status {result.returncode}: {' '.join(args)}\n"
                             f"stdout: {result.stdout}\nstderr: {result.stderr}")
    return result


def free_ports(n: int) -> list[int]:
    """n distinct ports free right now on 127.0.0.1 (all bound at once, so no two are equal)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class ServerProcess:
    """A server binary (router, prefill or decode worker) as a child process.

    Our servers print "listening on HOST:PORT" to stderr once they serve; the constructor waits
    for that line, so .address is usable at once. A thread keeps reading stderr into
    .stderr_lines (the pipe never fills up, and a failing test can show the log). stop() sends
    SIGTERM and returns the exit status; a server must exit 0 on it. Usable as a context manager,
    which stops the process in any case."""

    def __init__(self, binary_path, *args, ready_timeout_s: float = 60.0):
        self.args = [str(binary_path), *map(str, args)]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.stderr_lines: list[str] = []
        self.address: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(ready_timeout_s) or self.address is None:
            self.kill()
            raise AssertionError(f"no 'listening on' line from {' '.join(self.args)} "
                                 f"(exit status {self.proc.returncode}):\n{self.log()}")

    def _pump(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.stderr_lines.append(line)
            m = re.match(r"listening on (\S+)", line)
            if m and self.address is None:
                self.address = m.group(1)
                self._ready.set()
        self._ready.set()  # EOF: it exited without listening

    def log(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then the exit status; fails (after a SIGKILL) if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.args[0]} ignored SIGTERM for {timeout_s} s:\n"
                                 f"{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def scrape_metrics(server: ServerProcess) -> str:
    """GET /metrics of a worker started with --metrics-port, at the address of its "metrics on
    HOST:PORT" line (printed before "listening on"); the Prometheus text."""
    import urllib.request
    lines = [l for l in server.stderr_lines if l.startswith("metrics on ")]
    assert lines, f"no 'metrics on' line:\n{server.log()}"
    with urllib.request.urlopen(f"http://{lines[0].split()[2]}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode()


def assert_exit_status(args: list, status: int, message: str, timeout_s: float = 30.0) -> None:
    """Runs a command that must fail: exit `status` with `message` in its stderr (e.g. a bad
    flag: 2 and the flag's name). Still running after timeout_s (a server that took the flags
    and serves) is a failure too."""
    args = [str(a) for a in args]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(args)}: still running after {timeout_s} s, expected "
                             f"exit status {status} with {message!r}:\n"
                             f"{(e.stderr or b'').decode(errors='replace')}") from None
    assert result.returncode == status and message in result.stderr, (
        f"{' '.join(args)}: exit status {result.returncode}, expected {status} with "
        f"{message!r} in stderr:\n{result.stderr}")


def fetch_smollm2() -> pathlib.Path:
    """SmolLM2-135M-Instruct Q4_1, via deploy/fetch-model.sh (downloads once); fails when it cannot."""
    script = root_dir() / "deploy" / "fetch-model.sh"
    result = run_binary([script], timeout_s=600)
    path = pathlib.Path(result.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise AssertionError(f"fetch-model.sh printed {path}, which is not a file")
    return path


# ---- pdserve-logits -------------------------------------------------------------------------

LOGITS_TOOL = "tests/engine/pdserve-logits"
PDLG_MAGIC = b"PDLG"
_run_counter = itertools.count(1)  # distinct --out names within one process


def read_pdlg(path) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n,) int32, logits (n, vocab) float32) from a pdserve-logits output file:
    "PDLG", int32 n_tokens, int32 vocab, int32 ids[n], float32 logits[n][vocab], little-endian."""
    data = pathlib.Path(path).read_bytes()
    if data[:4] != PDLG_MAGIC:
        raise AssertionError(f"{path}: magic {data[:4]!r}, expected {PDLG_MAGIC!r}")
    n_tokens, vocab = struct.unpack_from("<ii", data, 4)
    if n_tokens <= 0 or vocab <= 0:
        raise AssertionError(f"{path}: n_tokens {n_tokens}, vocab {vocab}")
    expected = 12 + 4 * n_tokens + 4 * n_tokens * vocab
    if len(data) != expected:
        raise AssertionError(f"{path}: {len(data)} bytes, expected {expected} for "
                             f"{n_tokens} tokens x {vocab} logits")
    ids = np.frombuffer(data, dtype="<i4", count=n_tokens, offset=12)
    logits = np.frombuffer(data, dtype="<f4", count=n_tokens * vocab, offset=12 + 4 * n_tokens)
    return ids.astype(np.int32), logits.reshape(n_tokens, vocab).astype(np.float32)


def write_pdlg(path, ids, logits) -> None:
    """The inverse of read_pdlg (for testing the reader and for stand-ins of the tool)."""
    ids = np.asarray(ids, dtype="<i4")
    logits = np.asarray(logits, dtype="<f4")
    with open(path, "wb") as f:
        f.write(PDLG_MAGIC + struct.pack("<ii", len(ids), logits.shape[1]))
        f.write(ids.tobytes() + logits.tobytes())


def run_logits(out_dir, model, *, ids=None, prompt=None, chat_user=None, tokenizer=None,
               kernels=None, threads=None, timeout_s: float = 120.0):
    """Runs pdserve-logits on exactly one of ids / prompt / chat_user; returns read_pdlg's pair."""
    if sum(x is not None for x in (ids, prompt, chat_user)) != 1:
        raise ValueError("give exactly one of ids, prompt, chat_user")
    out = pathlib.Path(out_dir) / f"logits-{os.getpid()}-{next(_run_counter)}.pdlg"
    args = [binary(LOGITS_TOOL), "--model", model]
    if tokenizer is not None:
        args += ["--tokenizer", tokenizer]
    if ids is not None:
        args += ["--ids", ",".join(str(int(i)) for i in ids)]
    elif prompt is not None:
        args += ["--prompt", prompt]
    else:  # the text as the user's message in the model's chat template, generation prompt added
        args += ["--prompt", chat_user, "--chat"]
    if kernels is not None:
        args += ["--kernels", kernels]
    if threads is not None:
        args += ["--threads", threads]
    args += ["--out", out]
    run_binary(args, timeout_s)
    try:
        return read_pdlg(out)
    finally:
        out.unlink(missing_ok=True)


# ---- comparing logits -----------------------------------------------------------------------


def compare_logits(reference: np.ndarray, got: np.ndarray, min_top2_gap: float) -> dict:
    """How far `got` is from `reference`, both (n_tokens, vocab).

    Returns max_abs_diff (over every position and token), worst_position, and
    argmax_mismatches: [(position, reference argmax, got argmax, reference top-2 gap)] at the
    positions where the reference's top-2 gap exceeds min_top2_gap (elsewhere a near tie may
    legitimately flip), plus n_confident (how many positions were checked)."""
    if reference.shape != got.shape:
        raise AssertionError(f"logits shape {got.shape}, reference {reference.shape}")
    diff = np.abs(reference.astype(np.float64) - got.astype(np.float64))
    if not np.all(np.isfinite(got)):
        raise AssertionError("non-finite logits")
    top2 = np.sort(reference, axis=-1)[:, -2:]
    gaps = top2[:, 1] - top2[:, 0]
    ref_argmax = reference.argmax(axis=-1)
    got_argmax = got.argmax(axis=-1)
    mismatches = [(int(p), int(ref_argmax[p]), int(got_argmax[p]), float(gaps[p]))
                  for p in range(len(gaps))
                  if gaps[p] > min_top2_gap and ref_argmax[p] != got_argmax[p]]
    return {
        "max_abs_diff": float(diff.max()),
        "worst_position": int(diff.max(axis=-1).argmax()),
        "argmax_mismatches": mismatches,
        "n_confident": int((gaps > min_top2_gap).sum()),
    }


# ---- Hugging Face tokenizer from a GGUF file ------------------------------------------------


@contextlib.contextmanager
def _gguf_loading_without_torch():
    """Lets transformers read a GGUF file's tokenizer when torch is not installed.

    pdserve's dependencies have no torch. transformers' GGUF path needs it only for weights:
    `integrations/gguf/reader.py` imports torch at module level for tensor dtypes (its metadata
    functions are pure struct/numpy), and `load_gguf_checkpoint` refuses to run without torch
    even with return_tensors=False (the config-only path, which never touches torch). We import
    that reader with a placeholder torch, removed again at once, and lift the refusal for the
    duration of the call. Everything that decides the tokens (the vocabulary, merges, special
    tokens, add_bos_token, the tokenizer class, the chat template) is transformers' own code.
    With torch installed this does nothing.
    """
    if importlib.util.find_spec("torch") is not None:
        yield
        return

    import transformers.utils.import_utils as import_utils
    assert not import_utils.is_torch_available()  # cached now, before a placeholder exists
    placeholder = types.ModuleType("torch")
    placeholder.__getattr__ = lambda name: object()
    sys.modules["torch"] = placeholder
    try:
        importlib.import_module("transformers.integrations.gguf.reader")
    finally:
        del sys.modules["torch"]
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    saved = gguf_utils.is_torch_available
    gguf_utils.is_torch_available = lambda: True
    try:
        yield
    finally:
        gguf_utils.is_torch_available = saved


def hf_tokenizer_from_gguf(path):
    """AutoTokenizer.from_pretrained(folder, gguf_file=name), as a Hugging Face user loads it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local file: never the network
    from transformers import AutoTokenizer

    path = pathlib.Path(path)
    with _gguf_loading_without_torch():
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
