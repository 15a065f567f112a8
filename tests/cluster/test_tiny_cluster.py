"""End to end on a launched cluster: stories260K, 2 prefill + 2 decode workers, started with
deploy/launch.sh --detach on free ports. The cluster must reproduce pdserve-generate (one
process) token for token, count its requests in GetStats, answer bad input with the right status
and keep serving, and leave no process behind after launch.sh --stop."""

from __future__ import annotations

import concurrent.futures
import pathlib
import subprocess
import sys
import time

import grpc
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

router_pb2, router_pb2_grpc, common_pb2 = lib.stubs()


model = lib.stories_model
goldens = lib.stories_goldens


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Yields (router address, run dir, config); stops the cluster at the end in any case."""
    lib.require_cluster_binaries()
    tmp = tmp_path_factory.mktemp("tiny")
    config, router = lib.write_config(tmp, "tiny", model(), 2, 2)
    run_dir = tmp / "run"
    with lib.cluster(config, run_dir):
        yield router, run_dir, config


@pytest.fixture(scope="module")
def stub(cluster):
    channel = grpc.insecure_channel(cluster[0])
    yield router_pb2_grpc.RouterStub(channel)
    channel.close()


def generate(stub, timeout_s: float = 60.0, **fields):
    """(text, token ids, final message) of one Generate call."""
    texts, ids, final = [], [], None
    for response in stub.Generate(router_pb2.GenerateRequest(**fields), timeout=timeout_s):
        if response.HasField("chunk"):
            texts.append(response.chunk.text)
            ids.extend(response.chunk.token_ids)
        else:
            assert final is None, "two final messages"
            final = response.final
    assert final is not None, "the stream ended without a final message"
    return "".join(texts), ids, final


def test_greedy_matches_pdserve_generate_token_for_token(stub):
    for golden in goldens()[:4]:
        n = min(golden["max_new_tokens"], 120)
        text, ids, final = generate(stub, text=golden["prompt"], max_tokens=n)
        reference = lib.generate_reference(model(), golden["prompt"], n)
        assert text == reference, golden["prompt"]
        assert ids == golden["output_ids"][:n], golden["prompt"]
        assert final.usage.completion_tokens == len(ids)
        assert final.usage.prompt_tokens == len(golden["prompt_ids"])
        assert final.finish_reason in ("length", "eos")
        assert final.timing.ttft_seconds > 0 and final.timing.e2e_seconds >= final.timing.ttft_seconds
        assert final.prefill_worker.startswith("prefill-")
        assert final.decode_worker.startswith("decode-")


def test_pdserve_client_prints_the_same_text(cluster):
    prompt, n = "The little dog", 60
    r = lib.client(cluster[0], ["--prompt", prompt, "--max-tokens", n])
    assert r.returncode == 0, r.stderr
    assert r.stdout == lib.generate_reference(model(), prompt, n)
    assert "TTFT" in r.stderr and "TPOT" in r.stderr and "finish:" in r.stderr


def test_seeded_sampling_is_reproducible_and_matches_one_process(stub, cluster):
    prompt, n = "Once upon a time", 80
    sampling = common_pb2.SamplingOptions(temperature=0.9, top_k=40, top_p=0.95, seed=4242)
    first, _, _ = generate(stub, text=prompt, max_tokens=n, sampling=sampling)
    second, _, _ = generate(stub, text=prompt, max_tokens=n, sampling=sampling)
    assert first == second
    reference = lib.generate_reference(model(), prompt, n, extra=[
        "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "4242"])
    assert first == reference
    via_client = lib.client(cluster[0], ["--prompt", prompt, "--max-tokens", n, "--temperature",
                                         "0.9", "--top-k", "40", "--top-p", "0.95", "--seed",
                                         "4242"])
    assert via_client.returncode == 0, via_client.stderr
    assert via_client.stdout == reference


def test_stop_string_and_ignore_eos(stub):
    golden = goldens()[0]
    reference = lib.generate_reference(model(), golden["prompt"], 150)
    stop = reference.split()[5]
    text, _, final = generate(stub, text=golden["prompt"], max_tokens=150, stop=[stop])
    assert text == reference[: reference.index(stop)]
    assert text == lib.generate_reference(model(), golden["prompt"], 150, extra=["--stop", stop])
    assert final.finish_reason == "stop"
    _, ids, final = generate(stub, text="Once", max_tokens=300, ignore_eos=True)
    assert len(ids) == 300 and final.finish_reason == "length"


def test_twenty_concurrent_requests_complete_and_are_counted(stub):
    before = stub.GetStats(router_pb2.GetStatsRequest(), timeout=10).cluster.requests
    prompts = [f"{g['prompt']}" for g in goldens()] * 20
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda p: generate(stub, timeout_s=120, text=p, max_tokens=40),
                                prompts[:20]))
    for (text, ids, final), prompt in zip(results, prompts[:20]):
        assert final.usage.completion_tokens == len(ids) > 0
    # Each answer equals the same prompt's answer alone (batching changes nothing).
    alone = {}
    for (text, _, _), prompt in zip(results, prompts[:20]):
        if prompt not in alone:
            alone[prompt] = generate(stub, text=prompt, max_tokens=40)[0]
        assert text == alone[prompt]
    stats = stub.GetStats(router_pb2.GetStatsRequest(), timeout=10)
    c = stats.cluster
    assert c.requests.received >= 20 and c.requests.received - before.received >= 20
    assert c.requests.succeeded - before.succeeded >= 20
    assert c.requests.in_flight == 0
    for summary in (c.ttft_seconds, c.tpot_seconds, c.e2e_seconds):
        assert summary.count >= 20
        assert 0 < summary.p50 <= summary.p90 <= summary.p99, summary
    assert c.completion_tokens > 0 and c.output_tokens_per_second > 0
    roles = {w.worker.role for w in stats.workers}
    assert roles == {router_pb2.WORKER_ROLE_PREFILL, router_pb2.WORKER_ROLE_DECODE}
    served = [w for w in stats.workers if w.requests.succeeded > 0]
    assert len(served) >= 2, "requests went to one worker only"


BAD_REQUESTS = [
    ("negative max_tokens", dict(text="Once", max_tokens=-3), "max_tokens"),
    ("no prompt", dict(max_tokens=5), ""),
    ("empty prompt", dict(text="", max_tokens=5), ""),
    ("past the context", dict(text="Once", max_tokens=100000), ""),
    ("negative temperature", dict(text="Once", max_tokens=5,
                                  sampling=common_pb2.SamplingOptions(temperature=-1)), "temperature"),
    ("top_p 0", dict(text="Once", max_tokens=5, sampling=common_pb2.SamplingOptions(top_p=0)),
     "top_p"),
    ("negative top_k", dict(text="Once", max_tokens=5,
                            sampling=common_pb2.SamplingOptions(top_k=-1)), "top_k"),
    ("zero repetition penalty", dict(text="Once", max_tokens=5,
                                     sampling=common_pb2.SamplingOptions(repetition_penalty=0)),
     "repetition"),
    ("empty chat", dict(chat=router_pb2.ChatPrompt(), max_tokens=5), "message"),
    ("empty stop string", dict(text="Once", max_tokens=5, stop=[""]), "stop"),
    ("nan temperature", dict(text="Once", max_tokens=5,
                             sampling=common_pb2.SamplingOptions(temperature=float("nan"))),
     "temperature"),
]


@pytest.mark.parametrize("name,fields,word", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_invalid_argument_and_the_cluster_keeps_serving(stub, name, fields, word):
    with pytest.raises(grpc.RpcError) as error:
        generate(stub, timeout_s=30, **fields)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.value)
    assert error.value.details(), f"{name}: the status has no message"
    assert word.lower() in error.value.details().lower(), (name, error.value.details())
    text, ids, _ = generate(stub, text="Once upon a time", max_tokens=8)
    assert len(ids) == 8 and text


def test_pdserve_client_shows_bad_input_errors(cluster):
    r = lib.client(cluster[0], ["--prompt", "Once", "--max-tokens", "-2"])
    assert r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr, r.stderr


def test_client_list_workers_shows_all_four_healthy(cluster):
    r = lib.client(cluster[0], ["--list-workers"])
    assert r.returncode == 0, r.stderr
    rows = sorted(line.split()[:4] for line in r.stdout.splitlines()[1:])
    assert [(row[0], row[1], row[3]) for row in rows] == [
        ("decode-0", "decode", "healthy"), ("decode-1", "decode", "healthy"),
        ("prefill-0", "prefill", "healthy"), ("prefill-1", "prefill", "healthy")]
    r = lib.client(cluster[0], ["--stats"])
    assert r.returncode == 0 and "cluster: received" in r.stdout, r.stderr
    assert " over shm: " in r.stdout and "GB/s" in r.stdout, r.stdout


def test_python_client_example(cluster):
    example = lib.root_dir() / "examples" / "python_client.py"
    prompt, n = "Once upon a time", 50
    r = subprocess.run([sys.executable, str(example), "--router", cluster[0], "--prompt", prompt,
                        "--max-tokens", str(n)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == lib.generate_reference(model(), prompt, n)
    assert "TTFT" in r.stderr and "TPOT" in r.stderr


def decode_free_blocks(stub) -> dict:
    workers = stub.ListWorkers(router_pb2.ListWorkersRequest(), timeout=10).workers
    return {w.worker_id: w.load.free_kv_blocks for w in workers
            if w.role == router_pb2.WORKER_ROLE_DECODE}


def wait_for_free_blocks(stub, expected: dict, timeout_s: float = 15.0) -> dict:
    """The decode workers' free KV blocks once they equal `expected` (heartbeats carry them), or
    the last value seen when the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = decode_free_blocks(stub)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def invalid_utf8_generate(channel, text_bytes: bytes):
    """Generate with a text field that is not UTF-8, serialised by hand (protobuf refuses to)."""
    call = channel.unary_stream("/pdserve.v1.Router/Generate",
                                request_serializer=lambda raw: raw,
                                response_deserializer=router_pb2.GenerateResponse.FromString)
    request = b"\x0a" + bytes([len(text_bytes)]) + text_bytes + b"\x18\x05"  # text, max_tokens 5
    return list(call(request, timeout=30))


def test_cancel_deadline_and_bad_input_leave_the_decode_pools_as_they_were(cluster, stub):
    time.sleep(2.5)  # a heartbeat after the earlier tests' last request
    start = decode_free_blocks(stub)
    assert start and all(n > 0 for n in start.values()), start
    long_request = dict(text="Once upon a time", max_tokens=400, ignore_eos=True)

    # A client that cancels mid-stream.
    call = stub.Generate(router_pb2.GenerateRequest(**long_request), timeout=60)
    stream = iter(call)
    next(stream)
    next(stream)
    call.cancel()
    with pytest.raises(grpc.RpcError) as error:
        list(stream)
    assert error.value.code() == grpc.StatusCode.CANCELLED

    # A deadline that expires mid-request.
    with pytest.raises(grpc.RpcError) as error:
        generate(stub, timeout_s=0.05, **long_request)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    # Text that is not UTF-8.
    channel = grpc.insecure_channel(cluster[0])
    with pytest.raises(grpc.RpcError) as error:
        invalid_utf8_generate(channel, b"Once \xff\xfe upon")
    channel.close()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "utf-8" in error.value.details().lower(), error.value.details()

    # Still serving, and every block taken by the requests above is back.
    text, ids, final = generate(stub, text="Once upon a time", max_tokens=8)
    assert len(ids) == 8 and final.finish_reason == "length"
    assert wait_for_free_blocks(stub, start) == start


def test_same_request_id_from_two_clients_at_once_both_get_their_own_answer(stub):
    """A client-chosen id never collides with another request, the router's own included."""
    prompts = [goldens()[0]["prompt"], goldens()[1]["prompt"]]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(
            lambda p: generate(stub, text=p, max_tokens=40, request_id="req-2"), prompts))
    for (text, _, final), prompt in zip(results, prompts):
        assert final.request_id == "req-2"
        assert text == lib.generate_reference(model(), prompt, 40)
    # Ids the router makes are unique too: no ALREADY_EXISTS after a client sent "req-2".
    for _ in range(3):
        _, ids, final = generate(stub, text="Once", max_tokens=4)
        assert len(ids) == 4 and final.request_id.startswith("req-")
        assert final.request_id != "req-2"


def test_kv_moves_over_shared_memory_on_one_host(stub):
    """kv_transport=auto on one host: every handoff used shm; counts and rates per worker pair."""
    generate(stub, text="Once upon a time", max_tokens=4)
    stats = stub.GetStats(router_pb2.GetStatsRequest(), timeout=10)
    assert stats.kv_transfers, stats
    for t in stats.kv_transfers:
        assert t.transport == "shm", t
        assert t.prefill_worker.startswith("prefill-") and t.decode_worker.startswith("decode-")
        assert t.count > 0 and t.bytes > 0 and t.gb_per_second > 0, t
        assert 0 < t.seconds.p50 <= t.seconds.p99, t


def test_stop_leaves_no_process(cluster):
    router, run_dir, config = cluster
    pids = lib.read_pids(run_dir)
    r = lib.run_launch(["--stop", config], run_dir, timeout_s=60)
    assert r.returncode == 0, r.stderr
    lib.assert_all_gone(pids)
    assert lib.pgrep_pdserve(str(config)) == [], "pdserve processes left after --stop"
    assert lib.pgrep_pdserve(router) == [], "pdserve processes left after --stop"
