"""The router's OpenAI-compatible HTTP API on a launched stories260K cluster (1 prefill + 1
decode), called with the `openai` package and with raw HTTP: streamed greedy completions equal
the shared goldens with the right usage; bad requests get the mapped status and OpenAI's error
object; the connection limit answers 429. docs/openai-api.md."""

from __future__ import annotations

import json
import pathlib
import socket
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

MODEL = "stories260K"  # the default served name: the file name without its extension
MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    lib.require_cluster_binaries()
    tmp = tmp_path_factory.mktemp("openai")
    config, router = lib.write_config(
        tmp, "openai", lib.stories_model(), 1, 1,
        {"kv_pool_tokens": 2048, "router_flags": f"--http-max-connections {MAX_CONNECTIONS}"})
    with lib.cluster(config, tmp / "run"):
        yield router, lib.http_base(config)


@pytest.fixture(scope="module")
def client(cluster):
    return openai.OpenAI(base_url=cluster[1] + "/v1", api_key="unused", max_retries=0,
                         timeout=60)


def http(method: str, url: str, body=None, raw: bytes | None = None):
    """(status, parsed JSON body) of one request; error statuses do not raise."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_streamed_greedy_completions_equal_the_goldens_with_their_usage(client):
    for golden in lib.stories_goldens()[:4]:
        n = golden["max_new_tokens"]
        stream = client.completions.create(
            model=MODEL, prompt=golden["prompt"], max_tokens=n, temperature=0, stream=True,
            stream_options={"include_usage": True})
        text, finish, usage = "", None, None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].text
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage is not None:
                usage = chunk.usage
        assert text == golden["continuation"], golden["prompt"]
        assert finish == "length"
        assert usage is not None, "include_usage asked for a usage chunk"
        assert usage.prompt_tokens == len(golden["prompt_ids"])
        assert usage.completion_tokens == n
        assert usage.total_tokens == usage.prompt_tokens + n


def test_a_whole_completion_and_the_model_list(client):
    golden = lib.stories_goldens()[4]
    n = golden["max_new_tokens"]
    completion = client.completions.create(model=MODEL, prompt=golden["prompt"], max_tokens=n,
                                           temperature=0)
    assert completion.object == "text_completion"
    assert completion.model == MODEL
    assert completion.choices[0].text == golden["continuation"]
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == n
    # Stop strings end the text before them; the finish reason is "stop".
    stop_at = golden["continuation"].index("play")
    stopped = client.completions.create(model=MODEL, prompt=golden["prompt"], max_tokens=n,
                                        temperature=0, stop=["play"])
    assert stopped.choices[0].text == golden["continuation"][:stop_at]
    assert stopped.choices[0].finish_reason == "stop"
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_health_and_unknown_paths(cluster):
    status, body = http("GET", cluster[1] + "/health")
    assert status == 200 and body["status"] == "ok", body
    status, body = http("GET", cluster[1] + "/v1/nothing")
    assert status == 404 and "error" in body
    status, body = http("GET", cluster[1] + "/v1/completions")
    assert status == 405 and "POST" in body["error"]["message"]


@pytest.mark.parametrize("name,path,body,raw,status,words", [
    ("malformed JSON", "/v1/completions", None, b"{\"prompt\": ", 400, ["JSON"]),
    ("unknown model", "/v1/completions", {"model": "gpt-9", "prompt": "Hi"}, None, 404,
     ["gpt-9", MODEL]),
    ("missing messages", "/v1/chat/completions", {"model": MODEL}, None, 400, ["messages"]),
    ("max_tokens 0", "/v1/completions", {"prompt": "Hi", "max_tokens": 0}, None, 400,
     ["max_tokens"]),
    ("bad temperature", "/v1/completions", {"prompt": "Hi", "temperature": 7}, None, 400,
     ["temperature"]),
    ("prompt past the context", "/v1/completions",
     {"prompt": "Once upon a time " * 200, "max_tokens": 4}, None, 400, ["512"]),
    ("no chat template", "/v1/chat/completions",
     {"messages": [{"role": "user", "content": "Hi"}]}, None, 400, ["template"]),
])
def test_bad_requests_get_the_mapped_status_and_an_openai_error(cluster, name, path, body, raw,
                                                                 status, words):
    got, error = http("POST", cluster[1] + path, body=body, raw=raw)
    assert got == status, (name, error)
    assert set(error) == {"error"}, error
    assert isinstance(error["error"]["message"], str) and error["error"]["type"], error
    for word in words:
        assert word in error["error"]["message"], (name, error)


def test_the_openai_client_raises_its_typed_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="Hi", max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, temperature=9)


def test_connections_past_the_limit_are_answered_429(cluster):
    held = [socket.create_connection(("127.0.0.1", int(cluster[1].rsplit(":", 1)[1])))
            for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # the server has accepted them all
        status, error = http("GET", cluster[1] + "/v1/models")
        assert status == 429, error
        assert "limit" in error["error"]["message"], error
    finally:
        for s in held:
            s.close()
    # Once they are gone the server answers again.
    assert lib.wait_until(lambda: http("GET", cluster[1] + "/v1/models")[0] == 200, 10)
