"""SmolLM2-135M-Instruct on a launched 1 prefill + 1 decode cluster, reached over the OpenAI HTTP
API: a streamed greedy chat completion from the `openai` package equals what `pdserve-client
--chat` prints for the same request, and the README's two client examples
(examples/python_client.py over gRPC, examples/openai_client.py over HTTP) give a sensible
answer; a client that disconnects mid-stream cancels its request and the decode worker's free
blocks return to where they were (SmolLM2 on one core is slow enough for the stream to be
running when the client leaves)."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys

import grpc
import openai
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

router_pb2, router_pb2_grpc, _ = lib.stubs()

QUESTION = "What is the capital of France?"  # the README's example


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    lib.require_cluster_binaries()
    tmp = tmp_path_factory.mktemp("openai_smollm2")
    config, router = lib.write_config(tmp, "smollm2", lib.run_fetch_model(), 1, 1,
                                      {"kv_pool_tokens": 4096})
    with lib.cluster(config, tmp / "run"):
        yield router, lib.http_base(config)


def test_streamed_chat_equals_pdserve_client_chat(cluster):
    router, base = cluster
    prompt, n = "Name three colours of the rainbow.", 40
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=300)
    model = client.models.list().data[0].id
    assert model == "SmolLM2-135M-Instruct.Q4_1"
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=n,
        temperature=0, stream=True, stream_options={"include_usage": True})
    text, roles, usage = "", set(), None
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            text += delta.content or ""
            if delta.role:
                roles.add(delta.role)
        if chunk.usage is not None:
            usage = chunk.usage
    assert roles == {"assistant"}
    r = lib.client(router, ["--chat", "--prompt", prompt, "--max-tokens", n], timeout_s=300)
    assert r.returncode == 0, r.stderr
    assert text == r.stdout
    assert usage is not None and 0 < usage.completion_tokens <= n


def run_example(args: list) -> subprocess.CompletedProcess:
    script = lib.root_dir() / "examples" / args[0]
    result = subprocess.run([sys.executable, str(script)] + [str(a) for a in args[1:]],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_the_readme_examples_answer_sensibly(cluster):
    router, base = cluster
    grpc_answer = run_example(["python_client.py", "--router", router, "--chat",
                               "--prompt", QUESTION])
    http_answer = run_example(["openai_client.py", "--base-url", base + "/v1",
                               "--prompt", QUESTION])
    for result in (grpc_answer, http_answer):
        assert "Paris" in result.stdout, result.stdout
        assert "prompt" in result.stderr and "generated" in result.stderr, result.stderr
    # Both paths run the same greedy request through the same relay.
    assert grpc_answer.stdout.strip() == http_answer.stdout.strip()


def decode_free_blocks(router: str) -> tuple[int, int]:
    with grpc.insecure_channel(router) as channel:
        workers = router_pb2_grpc.RouterStub(channel).ListWorkers(
            router_pb2.ListWorkersRequest(), timeout=10).workers
    decode = [w for w in workers if w.role == router_pb2.WORKER_ROLE_DECODE]
    assert len(decode) == 1, workers
    return decode[0].load.free_kv_blocks, decode[0].load.total_kv_blocks


def test_a_client_that_disconnects_mid_stream_frees_its_blocks(cluster):
    router, base = cluster
    assert lib.wait_until(lambda: len(set(decode_free_blocks(router))) == 1, 15), \
        f"the decode pool is not idle: {decode_free_blocks(router)}"
    _, total = decode_free_blocks(router)
    assert total > 0
    body = json.dumps({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "Once upon a time", "max_tokens": 400,
                       "ignore_eos": True, "stream": True}).encode()
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while received.count(b"data: ") < 3:
            chunk = s.recv(4096)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received[:200]
        # Still generating when the client leaves: the sequence holds blocks.
        assert lib.stats(router).cluster.requests.in_flight == 1
        assert lib.wait_until(lambda: decode_free_blocks(router)[0] < total, 10)
    # Closed: the router cancels the request and the decode worker frees its blocks.
    free = lib.wait_until(lambda: decode_free_blocks(router)[0] == total, 15)
    assert free, f"decode free blocks {decode_free_blocks(router)} did not return to {total}"
    stats = lib.stats(router)
    assert stats.cluster.requests.cancelled >= 1, stats.cluster.requests
