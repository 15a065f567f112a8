"""Security end to end (docs/security.md): stories260K clusters of 1 prefill + 1 decode worker
launched with deploy/launch.sh, certificates made by tests/common/rpc/make_test_certs.sh (openssl)
at test time.

TLS cluster (tls_cert/tls_key/tls_ca + api_keys_file): a request with the API key over TLS
succeeds, over gRPC and over the HTTPS OpenAI API; a missing or wrong API key is UNAUTHENTICATED
(HTTP 401); plaintext to a TLS port and a client
certificate from another CA are refused in the handshake (UNAVAILABLE); a stranger cannot reach
Decode, Prefill or PushKv without the cluster's certificate, nor register as a worker.
Secret cluster (cluster_secret_file, plaintext): a request succeeds; a stranger's RegisterWorker,
Decode, Prefill and PushKv without the secret, or with a wrong one, are UNAUTHENTICATED.
Bad security files stop the process that reads them with a message naming the file."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import grpc
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_lib as lib  # noqa: E402

router_pb2, router_pb2_grpc, common_pb2 = lib.stubs()
import kv_transfer_pb2, kv_transfer_pb2_grpc, worker_pb2, worker_pb2_grpc  # noqa: E401,E402

API_KEY = "test-api-key-0123456789abcdef"
SECRET = "test-cluster-secret-0123456789"
SECRET_HEADER = "x-pdserve-cluster-secret"
PROMPT, N_TOKENS = "Once upon a time", 40

model = lib.stories_model


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("certs")
    script = lib.root_dir() / "tests" / "common" / "rpc" / "make_test_certs.sh"
    lib.run_binary(["bash", script, out], timeout_s=60)
    return out


def read(path: pathlib.Path) -> bytes:
    return path.read_bytes()


def config_ports(config: pathlib.Path) -> dict:
    values = dict(line.split("=", 1) for line in config.read_text().splitlines() if "=" in line)
    return {"prefill": f"127.0.0.1:{values['prefill_base_port']}",
            "decode": f"127.0.0.1:{values['decode_base_port']}"}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certs):
    """(router address, worker addresses, config) of a TLS cluster with API keys."""
    lib.require_cluster_binaries()
    tmp = tmp_path_factory.mktemp("tls")
    keys = tmp / "api_keys"
    keys.write_text(f"# the test's key\n{API_KEY}\n")
    config, router = lib.write_config(tmp, "tls", model(), 1, 1, {
        "tls_cert": certs / "node.pem", "tls_key": certs / "node.key", "tls_ca": certs / "ca.pem",
        "api_keys_file": keys})
    with lib.cluster(config, tmp / "run"):
        yield router, config_ports(config), config


@pytest.fixture(scope="module")
def secret_cluster(tmp_path_factory):
    """(router address, worker addresses, config) of a plaintext cluster with a secret."""
    lib.require_cluster_binaries()
    tmp = tmp_path_factory.mktemp("secret")
    secret = tmp / "secret"
    secret.write_text(SECRET + "\n")
    config, router = lib.write_config(tmp, "secret", model(), 1, 1,
                                      {"cluster_secret_file": secret})
    with lib.cluster(config, tmp / "run"):
        yield router, config_ports(config), config


def tls_channel(address: str, certs: pathlib.Path, ca="ca.pem", client: str | None = None):
    """TLS trusting `ca`; with `client` ("node", "stranger"), presenting that certificate."""
    key = read(certs / f"{client}.key") if client else None
    chain = read(certs / f"{client}.pem") if client else None
    creds = grpc.ssl_channel_credentials(root_certificates=read(certs / ca), private_key=key,
                                         certificate_chain=chain)
    return grpc.secure_channel(address, creds)


def generate_text(channel, metadata=()) -> str:
    stub = router_pb2_grpc.RouterStub(channel)
    text = []
    for response in stub.Generate(router_pb2.GenerateRequest(text=PROMPT, max_tokens=N_TOKENS),
                                  timeout=60, metadata=metadata):
        if response.HasField("chunk"):
            text.append(response.chunk.text)
    return "".join(text)


def client_with_env(router: str, args: list, env: dict) -> subprocess.CompletedProcess:
    """pdserve-client with PDSERVE_API_KEY taken out of the environment, then `env` added."""
    environment = {k: v for k, v in os.environ.items() if k != "PDSERVE_API_KEY"}
    environment.update(env)
    cmd = [str(lib.binary(lib.CLIENT_BIN)), "--router", router] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=environment)


def rpc_code(call) -> tuple[grpc.StatusCode, str]:
    """(status code, details) of `call()`, which must fail."""
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


# ---- the calls a stranger might make to a worker or the router ------------------------------


def stranger_decode(channel, metadata=()):
    request = worker_pb2.DecodeRequest(request_id="stranger", prompt_ids=[1, 2, 3],
                                       max_tokens=4)
    return list(worker_pb2_grpc.DecodeWorkerStub(channel).Decode(request, timeout=10,
                                                                  metadata=metadata))


def stranger_prefill(channel, metadata=()):
    request = worker_pb2.PrefillRequest(request_id="stranger", prompt_ids=[1, 2, 3])
    return worker_pb2_grpc.PrefillWorkerStub(channel).Prefill(request, timeout=10,
                                                               metadata=metadata)


def stranger_push_kv(channel, metadata=()):
    chunks = iter([kv_transfer_pb2.KvChunk()])
    return kv_transfer_pb2_grpc.KvReceiverStub(channel).PushKv(chunks, timeout=10,
                                                               metadata=metadata)


def stranger_register(channel, metadata=()):
    request = worker_pb2.RegisterWorkerRequest(worker_id="intruder",
                                               role=router_pb2.WORKER_ROLE_DECODE,
                                               address="127.0.0.1:1")
    return worker_pb2_grpc.WorkerRegistryStub(channel).RegisterWorker(request, timeout=10,
                                                                       metadata=metadata)


WORKER_CALLS = [("decode", stranger_decode), ("prefill", stranger_prefill),
                ("decode", stranger_push_kv)]


# ---- TLS ------------------------------------------------------------------------------------


def test_tls_request_with_api_key_matches_one_process(tls_cluster, certs):
    router, _, _ = tls_cluster
    reference = lib.generate_reference(model(), PROMPT, N_TOKENS)
    r = lib.client(router, ["--tls-ca", certs / "ca.pem", "--api-key", API_KEY,
                            "--prompt", PROMPT, "--max-tokens", N_TOKENS])
    assert r.returncode == 0, r.stderr
    assert r.stdout == reference
    with tls_channel(router, certs) as channel:
        assert generate_text(channel, [("authorization", f"Bearer {API_KEY}")]) == reference
    # The key may come from the environment instead of the command line.
    r = client_with_env(router, ["--tls-ca", certs / "ca.pem", "--prompt", PROMPT,
                                 "--max-tokens", N_TOKENS], {"PDSERVE_API_KEY": API_KEY})
    assert r.returncode == 0, r.stderr
    assert r.stdout == reference


def test_the_http_api_of_a_tls_cluster_is_https_and_needs_the_api_key(tls_cluster, certs):
    import ssl

    import httpx2 as httpx  # what the openai package uses
    import openai
    _, _, config = tls_cluster
    base = lib.http_base(config).replace("http://", "https://")
    reference = lib.generate_reference(model(), PROMPT, N_TOKENS)
    trusted = httpx.Client(verify=ssl.create_default_context(cafile=str(certs / "ca.pem")),
                           timeout=60)
    client = openai.OpenAI(base_url=base + "/v1", api_key=API_KEY, http_client=trusted,
                           max_retries=0)
    completion = client.completions.create(model="stories260K", prompt=PROMPT,
                                           max_tokens=N_TOKENS, temperature=0)
    assert completion.choices[0].text == reference
    # The key is required on /v1 (401, OpenAI's error object); probes and scrapes need none.
    for key in ("wrong-key-0123456789abcdef", None):
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        r = trusted.get(base + "/v1/models", headers=headers)
        assert r.status_code == 401, r.text
        assert "error" in r.json()
    assert trusted.get(base + "/health").status_code == 200
    # Plaintext HTTP to the HTTPS port and a client that does not trust the CA get nothing.
    with pytest.raises(httpx.TransportError):
        httpx.get(lib.http_base(config) + "/health", timeout=10)
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/health", timeout=10,
                  verify=ssl.create_default_context(cafile=str(certs / "stranger-ca.pem")))


def test_tls_missing_or_wrong_api_key_is_unauthenticated(tls_cluster, certs):
    router, _, _ = tls_cluster
    with tls_channel(router, certs) as channel:
        code, details = rpc_code(lambda: generate_text(channel))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "missing API key" in details
        code, details = rpc_code(
            lambda: generate_text(channel, [("authorization", "Bearer not-the-key-0123456789")]))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "wrong API key" in details
        assert "not-the-key" not in details
        stub = router_pb2_grpc.RouterStub(channel)
        code, _ = rpc_code(lambda: stub.ListWorkers(router_pb2.ListWorkersRequest(), timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    # pdserve-client: the same refusal, exit status 1.
    r = client_with_env(router, ["--tls-ca", certs / "ca.pem", "--stats"], {})
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr, r.stderr
    r = client_with_env(router, ["--tls-ca", certs / "ca.pem", "--stats"],
                        {"PDSERVE_API_KEY": "not-the-key-0123456789"})
    assert r.returncode == 1 and "wrong API key" in r.stderr, r.stderr


def test_tls_client_that_does_not_trust_the_cluster_ca_is_refused(tls_cluster, certs):
    router, _, _ = tls_cluster
    with tls_channel(router, certs, ca="stranger-ca.pem") as channel:
        code, _ = rpc_code(lambda: generate_text(channel, [("authorization",
                                                            f"Bearer {API_KEY}")]))
        assert code == grpc.StatusCode.UNAVAILABLE
    r = lib.client(router, ["--tls-ca", certs / "stranger-ca.pem", "--api-key", API_KEY,
                            "--stats"])
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, r.stderr


def test_plaintext_to_tls_ports_is_refused(tls_cluster):
    router, workers, _ = tls_cluster
    with grpc.insecure_channel(router) as channel:
        code, _ = rpc_code(lambda: generate_text(channel, [("authorization",
                                                            f"Bearer {API_KEY}")]))
        assert code == grpc.StatusCode.UNAVAILABLE
    for role, call in WORKER_CALLS:
        with grpc.insecure_channel(workers[role]) as channel:
            code, _ = rpc_code(lambda: call(channel))
            assert code == grpc.StatusCode.UNAVAILABLE, (role, call.__name__)


def test_client_certificate_of_another_ca_is_refused(tls_cluster, certs):
    router, workers, _ = tls_cluster
    with tls_channel(router, certs, client="stranger") as channel:
        code, _ = rpc_code(lambda: stranger_register(channel))
        assert code == grpc.StatusCode.UNAVAILABLE
    for role, call in WORKER_CALLS:
        with tls_channel(workers[role], certs, client="stranger") as channel:
            code, _ = rpc_code(lambda: call(channel))
            assert code == grpc.StatusCode.UNAVAILABLE, (role, call.__name__)


def test_tls_workers_need_a_client_certificate(tls_cluster, certs):
    _, workers, _ = tls_cluster
    for role, call in WORKER_CALLS:
        with tls_channel(workers[role], certs) as channel:  # trusts the CA, presents nothing
            code, _ = rpc_code(lambda: call(channel, [("authorization", f"Bearer {API_KEY}")]))
            assert code == grpc.StatusCode.UNAVAILABLE, (role, call.__name__)


def test_tls_router_refuses_a_stranger_registering_as_a_worker(tls_cluster, certs):
    router, _, _ = tls_cluster
    with tls_channel(router, certs) as channel:
        code, details = rpc_code(lambda: stranger_register(channel))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "no client certificate" in details
        # A valid API key makes it a known public client: denied, not unauthenticated.
        code, details = rpc_code(
            lambda: stranger_register(channel, [("authorization", f"Bearer {API_KEY}")]))
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
    with tls_channel(router, certs, client="node") as channel:  # the cluster's certificate
        stub = router_pb2_grpc.RouterStub(channel)
        workers = stub.ListWorkers(router_pb2.ListWorkersRequest(), timeout=10,
                                   metadata=[("authorization", f"Bearer {API_KEY}")]).workers
        assert "intruder" not in {w.worker_id for w in workers}
        assert len(workers) == 2


# ---- cluster secret ---------------------------------------------------------------------------


def test_secret_cluster_serves_a_request(secret_cluster):
    router, _, _ = secret_cluster
    r = lib.client(router, ["--prompt", PROMPT, "--max-tokens", N_TOKENS])
    assert r.returncode == 0, r.stderr
    assert r.stdout == lib.generate_reference(model(), PROMPT, N_TOKENS)


def test_secret_cluster_refuses_a_stranger_registering(secret_cluster):
    router, _, _ = secret_cluster
    with grpc.insecure_channel(router) as channel:
        code, details = rpc_code(lambda: stranger_register(channel))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "no cluster secret" in details
        code, details = rpc_code(
            lambda: stranger_register(channel, [(SECRET_HEADER, "wrong-secret-0123456789")]))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "wrong cluster secret" in details


@pytest.mark.parametrize("role,call", WORKER_CALLS, ids=["decode", "prefill", "push_kv"])
def test_secret_cluster_workers_refuse_strangers(secret_cluster, role, call):
    _, workers, _ = secret_cluster
    with grpc.insecure_channel(workers[role]) as channel:
        code, details = rpc_code(lambda: call(channel))
        assert code == grpc.StatusCode.UNAUTHENTICATED, details
        assert "no cluster secret" in details
        code, details = rpc_code(lambda: call(channel, [(SECRET_HEADER, "wrong-0123456789abcd")]))
        assert code == grpc.StatusCode.UNAUTHENTICATED, details
        assert "wrong cluster secret" in details


# ---- bad files ----------------------------------------------------------------------------------


def test_a_certificate_of_another_ca_stops_the_launch_with_a_message(tmp_path, certs):
    lib.require_cluster_binaries()
    config, _ = lib.write_config(tmp_path, "badtls", model(), 1, 1, {
        "tls_cert": certs / "stranger.pem", "tls_key": certs / "stranger.key",
        "tls_ca": certs / "ca.pem", "health_timeout_s": 30})
    r = lib.run_launch(["--detach", config], tmp_path / "run", timeout_s=60)
    assert r.returncode == 1, r.stderr
    # Every process reads the same files: whichever exits first is reported, with its log.
    assert "exited while the cluster was starting" in r.stderr, r.stderr
    assert "is not signed by the cluster CA" in r.stderr and "stranger.pem" in r.stderr


@pytest.mark.parametrize("args,message", [
    (["--tls-key", "KEY"], "missing: its certificate (--tls-cert), the cluster CA (--tls-ca)"),
    (["--cluster-secret-file", "NONE"], "cannot read the cluster secret file"),
    (["--api-keys-file", "CA"], "API key on line 1"),
])
def test_router_exits_2_naming_a_bad_security_file(certs, tmp_path, args, message):
    paths = {"KEY": certs / "node.key", "NONE": tmp_path / "none", "CA": certs / "ca.pem"}
    cmd = [lib.binary(lib.ROUTER_BIN), "--model", model()] + [str(paths.get(a, a)) for a in args]
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr


def test_client_exits_2_for_a_bad_ca_file(certs):
    r = lib.client("127.0.0.1:1", ["--tls-ca", certs / "node.key", "--stats"])
    assert r.returncode == 2 and "holds no PEM certificate" in r.stderr, r.stderr
