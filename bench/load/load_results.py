"""How bench/load counts what came back, whatever the protocol (gRPC Generate or OpenAI HTTP):
one request's timed Result, percentiles, the summary of a set of results, and the SLO test.

Latencies are measured at the client, as ../shared/ANCHORS.md defines them: TTFT = send -> first
chunk with tokens; TPOT = (end - first chunk) / (completion tokens - 1), the mean inter-token
latency of a request whatever the chunking; ITL = each gap between consecutive chunks with tokens
(a chunk may carry several tokens: tokens_per_chunk in the summary says how many on average, and
an ITL then spans that many tokens).
"""

from __future__ import annotations

import collections
import dataclasses
import math

# The code of a request the server had no room for (refused, not failed): gRPC's
# RESOURCE_EXHAUSTED, and HTTP 429 over the OpenAI protocol.
REFUSED = "RESOURCE_EXHAUSTED"
# The code of a stream that ended without tokens or without its end (final message, [DONE]).
INCOMPLETE = "INCOMPLETE_STREAM"


@dataclasses.dataclass
class Result:
    code: str  # "OK" when served; else REFUSED, INCOMPLETE, a gRPC code's name, HTTP_<status>...
    ttft: float = 0.0  # seconds
    tpot: float = 0.0  # seconds
    prompt_tokens: int = 0
    completion_tokens: int = 0
    end: float = 0.0  # time.monotonic() when the stream ended
    error: str = ""
    itl: list = dataclasses.field(default_factory=list)  # seconds, one per chunk after the first
    n_chunks: int = 0  # chunks that carried tokens

    @property
    def ok(self) -> bool:
        return self.code == "OK"


def percentile(values: list, q: float) -> float:
    """Linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def meets_slo(result: Result, ttft_slo_ms: float, tpot_slo_ms: float) -> bool:
    """Served with TTFT <= the TTFT limit and TPOT (mean ITL) <= the TPOT limit."""
    return (result.ok and result.ttft * 1e3 <= ttft_slo_ms
            and result.tpot * 1e3 <= tpot_slo_ms)


def summarize(results: list, start: float, window_s: float = 0.0) -> dict:
    """Counts and rates of results sent from time.monotonic() == start; latencies in ms (p50,
    p90, p99; the ITLs of every served request pooled), rates over the time from start to the
    last end, or over window_s (the time requests were sent in) when that is longer. NaN where
    there is nothing to measure."""
    served = [r for r in results if r.ok]
    codes = collections.Counter(r.code for r in results if not r.ok)
    duration = max(max((r.end for r in results), default=start) - start, window_s)
    per_s = (lambda count: count / duration) if duration > 0 else (lambda count: math.nan)
    n_chunks = sum(r.n_chunks for r in served)
    n_tokens = sum(r.completion_tokens for r in served)
    itls = [gap for r in served for gap in r.itl]
    return {
        "n": len(results), "served": len(served), "refused": codes.pop(REFUSED, 0),
        "failed": dict(sorted(codes.items())),
        "errors": {r.code: r.error for r in reversed(results) if not r.ok},  # one example a code
        "duration_s": duration,
        "ttft_ms": [percentile([r.ttft for r in served], q) * 1e3 for q in (50, 90, 99)],
        "tpot_ms": [percentile([r.tpot for r in served], q) * 1e3 for q in (50, 90, 99)],
        "itl_ms": [percentile(itls, q) * 1e3 for q in (50, 90, 99)],
        "req_s": per_s(len(served)),
        "tok_s": per_s(n_tokens),
        "prompt_mean": (sum(r.prompt_tokens for r in served) / len(served)) if served else math.nan,
        "tokens_per_chunk": n_tokens / n_chunks if n_chunks else math.nan,
    }


def summarize_with_slo(results: list, start: float, ttft_slo_ms: float, tpot_slo_ms: float,
                       window_s: float = 0.0) -> dict:
    """summarize() plus the SLO attainment (the share of all requests sent, served or not, that
    met both limits) and the goodput (those requests per second, over the same time)."""
    summary = summarize(results, start, window_s)
    met = sum(meets_slo(r, ttft_slo_ms, tpot_slo_ms) for r in results)
    summary["attainment"] = met / len(results) if results else math.nan
    summary["goodput_req_s"] = (met / summary["duration_s"] if summary["duration_s"] > 0
                                else math.nan)
    return summary
