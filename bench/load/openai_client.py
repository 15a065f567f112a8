"""What bench/load/load_gen.py --openai sends to an OpenAI-compatible server (pdserve's HTTP front,
llama.cpp's llama-server) and how it times it: one streamed POST /v1/completions over HTTP/1.1,
on asyncio streams (no third-party HTTP library, so the timing is the socket's), one connection
per request, closed after it; the server-sent events are parsed as they arrive.

The request: the prompt, max_tokens, temperature 0 (greedy), ignore_eos (so the output is exactly
max_tokens long), stream with stream_options.include_usage (the last event carries the token
counts). The timing (load_results.py): TTFT = send -> first event with text; ITL = each gap
between consecutive events with text (events read from the socket together share a time); TPOT =
(end -> first event with text) / (completion tokens - 1), with completion tokens from the usage
(the count of events with text when the server sends no usage).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import urllib.parse

from load_results import INCOMPLETE, REFUSED, Result
from load_workload import random_prompt

# Codes of requests that did not get an answer (beside HTTP_<status> and load_results' codes).
TIMEOUT = "TIMEOUT"  # no end within the request's timeout
CONNECTION = "CONNECTION"  # the connection failed, or the answer was not HTTP/1.x or SSE
SERVER_ERROR = "SERVER_ERROR"  # an {"error": ...} event inside the stream


@dataclasses.dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    api_key: str | None = None

    @staticmethod
    def parse(url: str, api_key: str | None = None) -> "Endpoint":
        """http://HOST:PORT, optionally with a trailing /v1 (as OpenAI clients' base URLs have);
        raises ValueError for anything else."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.path.rstrip("/") not in ("", "/v1"):
            raise ValueError(f"expected http://HOST:PORT[/v1], got '{url}'")
        return Endpoint(parts.hostname, parts.port or 80, api_key)

    def __str__(self) -> str:
        return f"http://{self.host}:{self.port}"


class SseParser:
    """Server-sent events from bytes fed in pieces as they arrive: feed() returns the data of every
    event completed by the piece (data lines joined by newlines; comments and other fields
    dropped). Lines may end with LF or CRLF; an event ends at an empty line."""

    def __init__(self):
        self._pending = b""
        self._data: list[str] = []

    def feed(self, piece: bytes) -> list[str]:
        self._pending += piece
        events = []
        *lines, self._pending = self._pending.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
                continue
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)
        return events


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict]:
    """(status, headers with lower-case names) of an HTTP/1.x response."""
    status_line = await reader.readline()
    version, _, rest = status_line.decode("latin-1").partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise ValueError(f"not an HTTP/1.x response: {status_line[:80]!r}")
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


async def _body_pieces(reader: asyncio.StreamReader, headers: dict):
    """The body's bytes as they arrive: de-chunked, or up to Content-Length, or up to the end of
    the connection."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            piece = await reader.readexactly(size)
            await reader.readuntil(b"\n")
            yield piece
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while piece := await reader.read(65536):
            yield piece


async def _exchange(endpoint: Endpoint, method: str, path: str, body: bytes | None):
    """Opens a connection and sends one request; returns (reader, writer, status, headers)."""
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        return (reader, writer, *await _send_and_read_head(reader, writer, endpoint, method, path,
                                                          body))
    except BaseException:
        writer.close()
        raise


async def _send_and_read_head(reader, writer, endpoint: Endpoint, method: str, path: str,
                              body: bytes | None) -> tuple[int, dict]:
    head = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}",
            "Connection: close", "Accept: text/event-stream, application/json"]
    if endpoint.api_key:
        head.append(f"Authorization: Bearer {endpoint.api_key}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
    await writer.drain()
    return await _read_head(reader)


async def get_json(endpoint: Endpoint, path: str, timeout_s: float = 10.0) -> dict:
    """GET path; the JSON body of a 200 answer. Raises OSError, ValueError (a status other than
    200, or a body that is not JSON) or asyncio.TimeoutError."""
    async def get():
        reader, writer, status, headers = await _exchange(endpoint, "GET", path, None)
        try:
            body = b"".join([piece async for piece in _body_pieces(reader, headers)])
        finally:
            writer.close()
        if status != 200:
            raise ValueError(f"GET {path}: HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
        return json.loads(body)
    return await asyncio.wait_for(get(), timeout_s)


async def served_model(endpoint: Endpoint, timeout_s: float = 10.0) -> str:
    """The id of the first model GET /v1/models lists."""
    models = (await get_json(endpoint, "/v1/models", timeout_s)).get("data") or []
    if not models or "id" not in models[0]:
        raise ValueError(f"{endpoint}/v1/models lists no model")
    return models[0]["id"]


def completion_payload(model: str, prompt: str, max_tokens: int) -> dict:
    return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}


def random_completion(model: str, rng: random.Random, prompt_tokens: tuple,
                      output_tokens: tuple) -> dict:
    """A completion request with a prompt of [lo, hi] words and an output of [lo, hi] tokens:
    for the same rng state, the prompt and length load_client.random_request draws."""
    return completion_payload(model, *random_prompt(rng, prompt_tokens, output_tokens))


def _event_text(event: dict) -> str:
    return "".join(choice.get("text") or "" for choice in event.get("choices") or ())


async def _stream_completion(endpoint: Endpoint, payload: dict, start: float) -> Result:
    reader, writer, status, headers = await _exchange(
        endpoint, "POST", "/v1/completions", json.dumps(payload).encode("utf-8"))
    try:
        if status != 200:
            body = b"".join([piece async for piece in _body_pieces(reader, headers)])
            return Result(code=REFUSED if status == 429 else f"HTTP_{status}",
                          end=time.monotonic(),
                          error=f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
        parser = SseParser()
        first = last = None
        itl = []
        usage = None
        done = False
        async for piece in _body_pieces(reader, headers):
            now = time.monotonic()
            for data in parser.feed(piece):
                if data.strip() == "[DONE]":
                    done = True
                    continue
                event = json.loads(data)
                if event.get("error"):
                    return Result(code=SERVER_ERROR, end=now, error=f"in the stream: {data[:200]}")
                usage = event.get("usage") or usage
                if _event_text(event):
                    if first is None:
                        first = now
                    else:
                        itl.append(now - last)
                    last = now
        end = time.monotonic()
    finally:
        writer.close()
    if not done or first is None:
        return Result(code=INCOMPLETE, end=end,
                      error="stream ended without text or without data: [DONE]")
    n_chunks = len(itl) + 1
    n = (usage or {}).get("completion_tokens") or n_chunks
    return Result(code="OK", ttft=first - start, tpot=(end - first) / (n - 1) if n > 1 else 0.0,
                  prompt_tokens=(usage or {}).get("prompt_tokens", 0), completion_tokens=n,
                  end=end, itl=itl, n_chunks=n_chunks)


async def timed_completion(endpoint: Endpoint, payload: dict, timeout_s: float) -> Result:
    """Sends one streamed completion, reads it to the end and times it. Never raises for what the
    server or the network does: that becomes the Result's code and error."""
    start = time.monotonic()
    try:
        return await asyncio.wait_for(_stream_completion(endpoint, payload, start), timeout_s)
    except asyncio.TimeoutError:
        return Result(code=TIMEOUT, end=time.monotonic(), error=f"no end within {timeout_s:g} s")
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
        return Result(code=CONNECTION, end=time.monotonic(), error=f"{type(e).__name__}: {e}")
