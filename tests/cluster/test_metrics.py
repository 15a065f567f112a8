"""Prometheus metrics of a launched cluster (stories260K, 1 prefill + 2 decode workers, every
/metrics on: docs/metrics.md). After N gRPC requests the router's /metrics counts N first
tokens, one inter-token gap per token after each request's first and the requests' usage in
its token counters; the workers count the same work from their side; each decode worker's KV
gauges agree with GetStats at rest; and every metric the Grafana dashboard queries is one the
cluster exports. Every /metrics is parsed with prometheus_client's parser, which fails on any
format error."""

from __future__ import annotations

import json
import math
import pathlib
import re
import sys
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

router_pb2, router_pb2_grpc, common_pb2 = lib.stubs()

# (prompt, max_tokens): ignore_eos makes each generate exactly max_tokens.
REQUESTS = [("Once upon a time", 12), ("The little dog", 5), ("Tom and Lily went", 20),
            ("One day", 1), ("The sun was", 9), ("She had a red ball", 16)]


def config_value(config: pathlib.Path, key: str) -> str:
    for line in config.read_text().splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{config} has no {key}")


class Scrape:
    """One GET /metrics, parsed: its families, and each sample by (name, labels)."""

    def __init__(self, url: str):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200, url
            content_type = response.headers["Content-Type"]
            assert content_type.startswith("text/plain; version=0.0.4"), content_type
            self.text = response.read().decode("utf-8")
        self.families = list(text_string_to_metric_families(self.text))
        self.samples = {}
        for family in self.families:
            for s in family.samples:
                key = (s.name, frozenset(s.labels.items()))
                assert key not in self.samples, f"{url}: {s.name}{s.labels} appears twice"
                self.samples[key] = s.value

    def value(self, name: str, **labels) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no {name}{labels} in:\n{self.text}"
        return self.samples[key]

    def names(self) -> set:
        """Every name a query may use: each family's and each sample's (x_total, x_bucket, ...)."""
        return {f.name for f in self.families} | {name for name, _ in self.samples}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Yields (router address, config) of a running cluster; stops it at the end in any case."""
    lib.require_cluster_binaries()
    tmp = tmp_path_factory.mktemp("metrics")
    config, router = lib.write_config(tmp, "metrics", lib.stories_model(), 1, 2)
    with lib.cluster(config, tmp / "run"):
        yield router, config


def router_metrics_url(config) -> str:
    return lib.http_base(config) + "/metrics"


def worker_metrics_url(config, role: str, i: int) -> str:
    port = int(config_value(config, f"{role}_metrics_base_port")) + i
    return f"http://127.0.0.1:{port}/metrics"


@pytest.fixture(scope="module")
def finals(cluster):
    """The final messages of REQUESTS, each run to its end over gRPC."""
    router, _ = cluster
    out = []
    with grpc.insecure_channel(router) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        for prompt, n in REQUESTS:
            final = None
            request = router_pb2.GenerateRequest(text=prompt, max_tokens=n, ignore_eos=True)
            for response in stub.Generate(request, timeout=60):
                if response.HasField("final"):
                    final = response.final
            assert final is not None and final.usage.completion_tokens == n, prompt
            out.append(final)
    return out


def test_router_counts_each_request_once_with_its_usage(cluster, finals):
    _, config = cluster
    m = Scrape(router_metrics_url(config))
    n = len(REQUESTS)
    assert m.value("pdserve_time_to_first_token_seconds_count") == n
    assert m.value("pdserve_time_to_first_token_seconds_bucket", le="+Inf") == n
    assert m.value("pdserve_e2e_request_latency_seconds_count") == n
    assert m.value("pdserve_requests_total", outcome="succeeded", finish_reason="length") == n
    assert m.value("pdserve_requests_total", outcome="failed", finish_reason="none") == 0
    assert m.value("pdserve_prompt_tokens_total") == sum(f.usage.prompt_tokens for f in finals)
    assert m.value("pdserve_generation_tokens_total") == sum(
        f.usage.completion_tokens for f in finals)
    # One gap per token after the first of each request.
    assert m.value("pdserve_inter_token_latency_seconds_count") == sum(
        f.usage.completion_tokens - 1 for f in finals)
    assert m.value("pdserve_kv_transfer_seconds_count") == n
    assert m.value("pdserve_kv_transfer_bytes_sum") > 0
    # The TTFT histogram agrees with what each client was told, bucket by bucket.
    buckets = {float(dict(labels)["le"]): v for (name, labels), v in m.samples.items()
               if name == "pdserve_time_to_first_token_seconds_bucket"}
    assert len(buckets) > 10 and math.inf in buckets
    for bound, count in buckets.items():
        assert count == sum(1 for f in finals if f.timing.ttft_seconds <= bound), bound
    assert m.value("pdserve_workers_healthy", role="prefill") == 1
    assert m.value("pdserve_workers_healthy", role="decode") == 2
    assert m.value("pdserve_requests_running") == 0


def test_workers_count_the_same_work(cluster, finals):
    _, config = cluster
    prefill = Scrape(worker_metrics_url(config, "prefill", 0))
    n = len(REQUESTS)
    assert prefill.value("pdserve_prefill_requests_total", outcome="succeeded") == n
    assert prefill.value("pdserve_prefill_prompt_tokens_total") == sum(
        f.usage.prompt_tokens for f in finals)
    assert prefill.value("pdserve_prefill_seconds_count") == n
    assert prefill.value("pdserve_prefill_kv_send_bytes_count") == n
    decodes = [Scrape(worker_metrics_url(config, "decode", i)) for i in range(2)]
    # Decode steps sample every token after the first (which prefill made).
    assert sum(d.value("pdserve_decode_tokens_total") for d in decodes) == sum(
        f.usage.completion_tokens - 1 for f in finals)
    assert sum(d.value("pdserve_decode_sequences_total", outcome="succeeded",
                       finish_reason="length") for d in decodes) == n


def test_decode_kv_gauges_match_get_stats_at_rest(cluster, finals):
    router, config = cluster
    ids = [f"decode-{i}" for i in range(2)]

    def views():
        """(each decode worker's own gauges, GetStats' view, the router's gauges) per worker."""
        stats = {w.worker.worker_id: w.worker.load for w in lib.stats(router).workers}
        router_m = Scrape(router_metrics_url(config))
        out = {}
        for i, worker_id in enumerate(ids):
            own = Scrape(worker_metrics_url(config, "decode", i))
            out[worker_id] = (
                (own.value("pdserve_kv_blocks_free"), own.value("pdserve_kv_blocks_used"),
                 own.value("pdserve_kv_blocks_total")),
                (stats[worker_id].free_kv_blocks,
                 stats[worker_id].total_kv_blocks - stats[worker_id].free_kv_blocks,
                 stats[worker_id].total_kv_blocks),
                (router_m.value("pdserve_worker_kv_blocks_free", worker=worker_id),
                 router_m.value("pdserve_worker_kv_blocks_used", worker=worker_id)))
        return out

    # Heartbeats (every second) bring GetStats up to date with the workers.
    agreed = lib.wait_until(lambda: all(own == get and get[:2] == ours
                                        for own, get, ours in views().values()), timeout_s=5)
    assert agreed, views()
    for own, _, _ in views().values():
        free, used, total = own
        assert total > 0 and free + used == total


def dashboard_exprs() -> list:
    path = lib.root_dir() / "deploy" / "grafana" / "pdserve-dashboard.json"
    dashboard = json.loads(path.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels, "the dashboard has no panels"
    exprs = []
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        targets = panel.get("targets", [])
        assert targets, f"panel '{panel['title']}' has no queries"
        exprs += [(panel["title"], t["expr"]) for t in targets]
    return exprs


# PromQL's functions and aggregations that the dashboard uses.
_PROMQL_WORDS = {"sum", "rate", "histogram_quantile", "clamp_min", "avg", "max", "min",
                 "increase"}


def test_every_dashboard_query_names_an_exported_metric(cluster, finals):
    _, config = cluster
    scrapes = [Scrape(router_metrics_url(config)), Scrape(worker_metrics_url(config, "prefill", 0))]
    scrapes += [Scrape(worker_metrics_url(config, "decode", i)) for i in range(2)]
    exported = set().union(*(s.names() for s in scrapes))
    histograms = {f.name for s in scrapes for f in s.families if f.type == "histogram"}
    exprs = dashboard_exprs()
    used = set()
    for title, expr in exprs:
        # Label matchers and lists, strings, ranges, $variables and numbers are not metrics.
        bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
        bare = re.sub(r'\{[^}]*\}|"[^"]*"|\$\w+|\[[^\]]*\]', " ", bare)
        bare = re.sub(r"(?<![\w:])\d[\d.eE+-]*", " ", bare)
        names = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)
                 if w not in _PROMQL_WORDS}
        assert names, f"panel '{title}': no metric in {expr}"
        for name in names:
            assert name in exported, f"panel '{title}' queries {name}, which no /metrics exports"
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name.endswith("_bucket"):
                assert base in histograms, f"panel '{title}': {name} is not a histogram's buckets"
            used.add(base if base in histograms else name)
    # The dashboard shows what the brief asked of it.
    for required in ("pdserve_time_to_first_token_seconds", "pdserve_inter_token_latency_seconds",
                     "pdserve_generation_tokens_total", "pdserve_requests_total",
                     "pdserve_worker_kv_blocks_used", "pdserve_worker_kv_blocks_free",
                     "pdserve_requests_queued", "pdserve_workers_healthy"):
        assert required in used, f"no panel shows {required}"
