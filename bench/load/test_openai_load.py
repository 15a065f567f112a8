"""bench/load's OpenAI protocol (openai_client.py) and its statistics (load_results.py), with no
real server: a fake OpenAI server in this process (asyncio, 127.0.0.1, an ephemeral port) streams
server-sent events at known times, split across HTTP chunks and TCP writes. Checks the request
sent, the SSE and chunked-encoding parsing, TTFT / ITL / TPOT and token counts, each failure's
code, the percentiles, SLO attainment and goodput, and load_gen.py --openai end to end (its table,
--results JSON, the same prompts at every rate)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import pathlib
import subprocess
import sys
import threading
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import load_results as lr  # noqa: E402
import openai_client as oc  # noqa: E402

TTFT_S = 0.2  # the fake server's wait before the first event with text
GAP_S = 0.03  # its wait between events with text


@dataclasses.dataclass
class Behaviour:
    status: int = 200
    tokens_per_chunk: int = 1
    send_usage: bool = True
    send_done: bool = True
    error_event: bool = False
    stall_s: float = 0.0  # a wait before anything is answered


class FakeOpenAIServer:
    """GET /v1/models and a streamed POST /v1/completions of max_tokens one-word tokens, in a
    thread with its own event loop. Records every completion request's JSON body."""

    def __init__(self):
        self.behaviour = Behaviour()
        self.requests: list[dict] = []
        self.heads: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result()
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        async def stop():
            self._server.close()
            await self._server.wait_closed()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in handlers:
                t.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _serve(self, reader, writer):
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.heads.append(head)
            length = next((int(line.split(":")[1]) for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), 0)
            body = await reader.readexactly(length)
            if head.startswith("GET /v1/models "):
                answer = json.dumps({"object": "list", "data": [{"id": "fake-model"}]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
            elif head.startswith("POST /v1/completions "):
                self.requests.append(json.loads(body))
                await self._complete(writer, self.requests[-1], self.behaviour)
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    @staticmethod
    async def _complete(writer, request: dict, b: Behaviour):
        await asyncio.sleep(b.stall_s)
        if b.status != 200:
            answer = b'{"error": {"message": "busy"}}'
            writer.write(b"HTTP/1.1 %d Nope\r\nContent-Length: %d\r\n\r\n%s"
                         % (b.status, len(answer), answer))
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")

        async def send_chunk(payload: bytes):
            # Each HTTP chunk in two TCP writes, cut inside the SSE line, with CRLF line ends.
            data = b"%x\r\n%s\r\n" % (len(payload), payload)
            cut = len(data) // 2
            writer.write(data[:cut])
            await writer.drain()
            writer.write(data[cut:])
            await writer.drain()

        await asyncio.sleep(TTFT_S)
        n = request["max_tokens"]
        sent = 0
        while sent < n:
            k = min(b.tokens_per_chunk, n - sent)
            event = {"choices": [{"index": 0, "text": " tok" * k, "finish_reason": None}]}
            await send_chunk(b"data: %s\r\n\r\n" % json.dumps(event).encode())
            sent += k
            if sent < n:
                await asyncio.sleep(GAP_S)
            if b.error_event:
                await send_chunk(b'data: {"error": {"message": "went wrong"}}\n\n')
                break
        if b.send_usage:
            usage = {"prompt_tokens": len(request["prompt"].split()), "completion_tokens": n}
            await send_chunk(b"data: %s\n\n" % json.dumps({"choices": [], "usage": usage}).encode())
        if b.send_done:
            await send_chunk(b": a comment line\n\ndata: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")


@pytest.fixture
def server():
    s = FakeOpenAIServer()
    yield s
    s.close()


def complete(server, max_tokens: int = 5, timeout_s: float = 30.0) -> lr.Result:
    payload = oc.completion_payload("fake-model", "once upon a time", max_tokens)
    return asyncio.run(oc.timed_completion(oc.Endpoint.parse(server.url), payload, timeout_s))


# ---- the request and the timing --------------------------------------------------------------

def test_a_streamed_completion_is_timed_and_counted(server):
    r = complete(server, max_tokens=5)
    assert r.code == "OK", r.error
    sent = server.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["ignore_eos"] is True and sent["temperature"] == 0 and sent["max_tokens"] == 5
    assert (r.prompt_tokens, r.completion_tokens, r.n_chunks, len(r.itl)) == (4, 5, 5, 4)
    # The server waited TTFT_S before the first text and GAP_S between texts: lower bounds that
    # hold however slow the machine (upper bounds would not).
    assert r.ttft >= TTFT_S
    assert r.ttft + r.tpot * (r.completion_tokens - 1) >= TTFT_S + 4 * GAP_S
    assert all(gap >= 0 for gap in r.itl) and sum(r.itl) <= r.tpot * 4 + 1e-9


def test_chunks_of_several_tokens_count_tokens_from_the_usage(server):
    server.behaviour.tokens_per_chunk = 3
    r = complete(server, max_tokens=7)  # chunks of 3, 3, 1 tokens
    assert r.code == "OK", r.error
    assert (r.completion_tokens, r.n_chunks, len(r.itl)) == (7, 3, 2)
    summary = lr.summarize([r], time.monotonic() - 10)
    assert summary["tokens_per_chunk"] == pytest.approx(7 / 3)


def test_without_usage_each_chunk_counts_one_token(server):
    server.behaviour.send_usage = False
    r = complete(server, max_tokens=4)
    assert (r.code, r.completion_tokens, r.prompt_tokens) == ("OK", 4, 0)


def test_the_model_is_the_first_listed_and_the_api_key_is_sent(server):
    endpoint = oc.Endpoint.parse(server.url + "/v1", api_key="k3y")
    assert asyncio.run(oc.served_model(endpoint)) == "fake-model"
    assert "Authorization: Bearer k3y" in server.heads[-1]


@pytest.mark.parametrize("url", ["https://127.0.0.1:1", "127.0.0.1:8080", "http://h:1/v2", "http://"])
def test_a_bad_url_is_refused(url):
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        oc.Endpoint.parse(url)


# ---- failures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("behaviour,code", [
    (Behaviour(status=429), lr.REFUSED),
    (Behaviour(status=503), "HTTP_503"),
    (Behaviour(send_done=False), lr.INCOMPLETE),
    (Behaviour(error_event=True), oc.SERVER_ERROR),
])
def test_a_request_not_served_has_its_code(server, behaviour, code):
    server.behaviour = behaviour
    r = complete(server)
    assert r.code == code and not r.ok and r.error, r


def test_a_server_too_slow_is_a_timeout(server):
    server.behaviour.stall_s = 5
    started = time.monotonic()
    r = complete(server, timeout_s=0.3)
    assert r.code == oc.TIMEOUT and time.monotonic() - started < 4, r


def test_nothing_listening_is_a_connection_failure(server):
    url = server.url
    server.close()
    payload = oc.completion_payload("m", "p", 2)
    r = asyncio.run(oc.timed_completion(oc.Endpoint.parse(url), payload, 5))
    assert r.code == oc.CONNECTION, r
    server.close = lambda: None  # closed already


# ---- the SSE parser --------------------------------------------------------------------------

def test_sse_events_are_found_across_pieces_and_line_ends():
    p = oc.SseParser()
    stream = b'data: {"a":\r\ndata: 1}\r\n\r\n: comment\n\nevent: x\ndata:[DONE]\n\n'
    events = []
    for i in range(len(stream)):  # a byte at a time
        events += p.feed(stream[i:i + 1])
    assert events == ['{"a":\n1}', "[DONE]"]
    assert p.feed(b"data: half") == []  # no empty line yet: no event


# ---- statistics ------------------------------------------------------------------------------

def test_percentiles_interpolate_between_ranks():
    values = [4.0, 1.0, 3.0, 2.0, 5.0]
    assert lr.percentile(values, 50) == 3.0
    assert lr.percentile(values, 0) == 1.0 and lr.percentile(values, 100) == 5.0
    assert lr.percentile(values, 90) == pytest.approx(4.6)
    assert lr.percentile([7.0], 99) == 7.0
    assert math.isnan(lr.percentile([], 50))


def test_attainment_and_goodput_count_requests_meeting_both_limits():
    start = 100.0
    ok = lambda ttft, tpot, end: lr.Result("OK", ttft=ttft, tpot=tpot, completion_tokens=10,
                                           end=end, itl=[tpot] * 9, n_chunks=10)
    results = [ok(0.1, 0.01, 102.0),  # meets both
               ok(0.1, 0.05, 103.0),  # TPOT over 20 ms
               ok(0.9, 0.01, 104.0),  # TTFT over 500 ms
               ok(0.5, 0.02, 105.0),  # meets both (limits are inclusive)
               lr.Result(lr.REFUSED, end=101.0),
               lr.Result("HTTP_500", end=101.0)]
    s = lr.summarize_with_slo(results, start, ttft_slo_ms=500, tpot_slo_ms=20)
    assert (s["n"], s["served"], s["refused"], s["failed"]) == (6, 4, 1, {"HTTP_500": 1})
    assert s["attainment"] == pytest.approx(2 / 6)
    assert s["duration_s"] == pytest.approx(5.0)
    assert s["goodput_req_s"] == pytest.approx(2 / 5)
    assert s["req_s"] == pytest.approx(4 / 5) and s["tok_s"] == pytest.approx(40 / 5)
    assert s["ttft_ms"][0] == pytest.approx(300)  # median of 100, 100, 500, 900
    # ITLs pooled over requests: 9 of each request's TPOT.
    assert s["itl_ms"][0] == pytest.approx(15) and s["itl_ms"][2] == pytest.approx(50)
    assert s["tokens_per_chunk"] == 1.0
    # Rates are over the time requests were sent in when that is longer than start -> last end.
    s = lr.summarize_with_slo(results, start, ttft_slo_ms=500, tpot_slo_ms=20, window_s=10.0)
    assert s["duration_s"] == 10.0 and s["goodput_req_s"] == pytest.approx(2 / 10)


# ---- load_gen.py --openai end to end ---------------------------------------------------------

def test_load_gen_sweeps_an_openai_server_and_writes_its_results(server, tmp_path):
    results = tmp_path / "results.json"
    r = subprocess.run([sys.executable, str(HERE / "load_gen.py"), "--openai", server.url,
                        "--sweep", "20,40", "-n", "4", "--warmup", "1", "--prompt-tokens", "8:16",
                        "--output-tokens", "3:6", "--ttft-slo-ms", "60000", "--tpot-slo-ms",
                        "10000", "--results", str(results)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith(("  20.00", "  40.00"))]
    assert [(row[0], row[1], row[-1]) for row in rows] == [("20.00", "4/4", "100.0%"),
                                                           ("40.00", "4/4", "100.0%")], r.stdout
    assert "goodput: 40 req/s" in r.stdout
    doc = json.loads(results.read_text())
    assert doc["protocol"] == "openai" and doc["target"] == server.url
    assert [rate["rate"] for rate in doc["rates"]] == [20, 40]
    for rate in doc["rates"]:
        assert rate["served"] == 4 and rate["attainment"] == 1.0
        assert rate["ttft_ms"][0] >= TTFT_S * 1e3 and rate["goodput_req_s"] > 0
    # A warm-up request, then the same 4 prompts at each rate, all with the listed model.
    sent = server.requests
    assert len(sent) == 9 and {s["model"] for s in sent} == {"fake-model"}
    assert [s["prompt"] for s in sent[1:5]] == [s["prompt"] for s in sent[5:]]
    assert len({s["prompt"] for s in sent[1:5]}) == 4


def test_load_gen_duration_bounds_the_arrivals(server):
    r = subprocess.run([sys.executable, str(HERE / "load_gen.py"), "--openai", server.url,
                        "--rate", "50", "--duration-s", "0.2", "--output-tokens", "2:2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # Poisson arrivals at 50/s for 0.2 s: the first at 0, ~10 in all; far from the default 32.
    assert 1 <= len(server.requests) < 32


def test_load_gen_without_a_server_says_so(server):
    url = server.url
    server.close()
    server.close = lambda: None
    r = subprocess.run([sys.executable, str(HERE / "load_gen.py"), "--openai", url, "-n", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot reach the server" in r.stderr, r.stderr


def test_load_gen_refuses_openai_outside_the_open_loop():
    r = subprocess.run([sys.executable, str(HERE / "load_gen.py"), "--openai", "http://h:1",
                        "--concurrency", "2", "-n", "2"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "open loop" in r.stderr, r.stderr
