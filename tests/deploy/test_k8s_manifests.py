"""deploy/k8s, rendered without kubectl (deploy_lib.render_kustomization: the base, and each
overlay on top of it) and checked offline: every resource is valid for Kubernetes 1.33
(kubernetes-validate's schemas, strict: no unknown field), and the pieces fit together the way
pdserve needs. Probes are gRPC probes on the port the container's --listen serves; workers
register under their pod name and advertise their pod IP (downward API); every command is a
binary the image installs and every flag one that binary takes (its --help, from this build);
the drain fits in the grace period; selectors, config keys, volumes and scrape ports point at
things that exist."""

from __future__ import annotations

import functools
import pathlib
import re
import subprocess

import kubernetes_validate
import pytest

import deploy_lib as lib

K8S_VERSION = "1.33.0"
K8S_DIR = lib.root_dir() / "deploy" / "k8s"
OVERLAYS = sorted(p.parent for p in (K8S_DIR / "overlays").glob("*/kustomization.yaml"))
# Where the image installs each binary's build output (tests/deploy/test_dockerfile.py checks
# the Dockerfile's side).
BINARIES = {"pdserve-router": "router/pdserve-router",
            "pdserve-prefill-worker": "prefill_node/pdserve-prefill-worker",
            "pdserve-decode-worker": "decode_node/pdserve-decode-worker"}
WORKERS = ("pdserve-prefill", "pdserve-decode")


@functools.lru_cache(maxsize=None)
def rendered(directory: pathlib.Path) -> tuple:
    return tuple(lib.render_kustomization(directory))


def find(resources, kind: str, name: str) -> dict:
    matches = [r for r in resources if lib.key(r) == (kind, name)]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def deployments(resources) -> list[dict]:
    return [r for r in resources if r["kind"] == "Deployment"]


def only_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def flag(container: dict, name: str) -> str | None:
    """The value of --name=VALUE in the container's args."""
    values = [a.split("=", 1)[1] for a in container.get("args", []) if a.startswith(f"--{name}=")]
    assert len(values) <= 1, (name, values)
    return values[0] if values else None


def port_named(container: dict, name: str) -> int:
    ports = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == name]
    assert len(ports) == 1, (container["name"], name, container.get("ports"))
    return ports[0]


@functools.lru_cache(maxsize=None)
def help_text(binary: str) -> str:
    result = subprocess.run([str(lib.binary(BINARIES[binary])), "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


all_trees = pytest.mark.parametrize("tree", [K8S_DIR / "base"] + OVERLAYS,
                                    ids=lambda p: str(p.relative_to(K8S_DIR)))


def test_there_is_a_base_and_an_overlay():
    assert (K8S_DIR / "base" / "kustomization.yaml").is_file()
    assert OVERLAYS, "no overlay under deploy/k8s/overlays"


@all_trees
def test_every_resource_is_valid_for_kubernetes(tree):
    resources = rendered(tree)
    assert resources
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{tree.name}: {lib.key(resource)}: {e.message} at "
                                 f"{'/'.join(map(str, e.path))}") from None


def test_the_tools_are_valid_and_mount_the_models_volume():
    tools = sorted((K8S_DIR / "tools").glob("*.yaml"))
    assert tools
    claim = find(rendered(K8S_DIR / "base"), "PersistentVolumeClaim", "pdserve-models")
    for path in tools:
        for resource in lib.load_documents(path):
            kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
            claims = [v["persistentVolumeClaim"]["claimName"]
                      for v in resource["spec"].get("volumes", []) if "persistentVolumeClaim" in v]
            assert claims == [claim["metadata"]["name"]], (path, claims)


@all_trees
def test_no_secret_is_committed(tree):
    assert not [lib.key(r) for r in rendered(tree) if r["kind"] == "Secret"]
    for path in K8S_DIR.rglob("*.yaml"):
        text = path.read_text()
        assert not re.search(r"(?i)(password|api[-_]?key|token|BEGIN [A-Z ]*PRIVATE KEY)\s*[:=]",
                             text), path


@all_trees
def test_the_router_and_both_worker_roles_run_the_images_binaries(tree):
    resources = rendered(tree)
    commands = {}
    for deployment in deployments(resources):
        container = only_container(deployment)
        assert container["image"].split(":")[0] == "pdserve", container["image"]
        assert len(container["command"]) == 1, container["command"]
        commands[deployment["metadata"]["name"]] = container["command"][0]
    assert commands == {"pdserve-router": "pdserve-router",
                        "pdserve-prefill": "pdserve-prefill-worker",
                        "pdserve-decode": "pdserve-decode-worker"}, commands


@all_trees
def test_every_flag_is_one_the_binary_takes(tree):
    for deployment in deployments(rendered(tree)):
        container = only_container(deployment)
        usage = help_text(container["command"][0])
        for arg in container.get("args", []):
            assert arg.startswith("--") and "=" in arg, f"write flags as --name=value: {arg}"
            name = arg[2:].split("=", 1)[0]
            assert re.search(rf"^\s*--{re.escape(name)}\b", usage, re.M), (
                f"{container['command'][0]} has no --{name}")


@all_trees
def test_every_variable_in_args_is_defined_in_the_containers_env(tree):
    resources = rendered(tree)
    for deployment in deployments(resources):
        container = only_container(deployment)
        env = {e["name"]: e for e in container.get("env", [])}
        for arg in container.get("args", []):
            for name in re.findall(r"\$\((\w+)\)", arg):
                # Kubernetes leaves an undefined $(NAME) as literal text, silently.
                assert name in env, f"{deployment['metadata']['name']}: {arg}: no env {name}"
        for e in env.values():
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                config = find(resources, "ConfigMap", ref["name"])
                assert ref["key"] in config["data"], (ref, config["data"])


@all_trees
def test_probes_are_grpc_probes_on_the_port_the_container_serves_grpc_on(tree):
    for deployment in deployments(rendered(tree)):
        container = only_container(deployment)
        listen = flag(container, "listen")
        assert listen and listen.startswith("0.0.0.0:"), listen  # reachable on the pod IP
        port = int(listen.rsplit(":", 1)[1])
        assert port_named(container, "grpc") == port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, (deployment["metadata"]["name"], probe)
            assert set(container[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}
            assert container[probe]["grpc"]["port"] == port, (probe, container[probe])


@all_trees
def test_workers_register_under_their_pod_name_and_advertise_their_pod_ip(tree):
    resources = rendered(tree)
    router_service = find(resources, "Service", "pdserve-router")
    router_grpc = next(p["port"] for p in router_service["spec"]["ports"] if p["name"] == "grpc")
    for name in WORKERS:
        container = only_container(find(resources, "Deployment", name))
        env = {e["name"]: e for e in container["env"]}
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert flag(container, "worker-id") == "$(POD_NAME)"
        assert flag(container, "advertise") == f"$(POD_IP):{port_named(container, 'grpc')}"
        assert flag(container, "router") == f"pdserve-router:{router_grpc}"
        # Pods share no /dev/shm: KV goes over TCP.
        assert flag(container, "kv-transport") == "tcp"


@all_trees
def test_the_grace_period_covers_the_drain(tree):
    for name in WORKERS:
        deployment = find(rendered(tree), "Deployment", name)
        drain_s = int(flag(only_container(deployment), "drain-timeout-s"))
        grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        # Deregistering, stopping the server and its last writes after the drain: seconds.
        assert grace_s >= drain_s + 10, (name, drain_s, grace_s)


@all_trees
def test_the_router_service_serves_grpc_and_http(tree):
    resources = rendered(tree)
    service = find(resources, "Service", "pdserve-router")
    router = only_container(find(resources, "Deployment", "pdserve-router"))
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == 50051 and ports["http"]["port"] == 8000, ports
    for name, p in ports.items():
        assert port_named(router, p["targetPort"]) == p["port"], p
    assert flag(router, "http-listen") == "0.0.0.0:8000"
    assert flag(router, "listen") == "0.0.0.0:50051"


@all_trees
def test_selectors_pick_the_pods_they_are_meant_for(tree):
    resources = rendered(tree)
    pod_labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
                  for d in deployments(resources)}

    def selected(selector: dict) -> list[str]:
        return [n for n, labels in pod_labels.items()
                if all(labels.get(k) == v for k, v in selector.items())]

    for name in pod_labels:
        deployment = find(resources, "Deployment", name)
        assert selected(deployment["spec"]["selector"]["matchLabels"]) == [name]
    assert selected(find(resources, "Service", "pdserve-router")["spec"]["selector"]) == [
        "pdserve-router"]
    for budget in (r for r in resources if r["kind"] == "PodDisruptionBudget"):
        assert len(selected(budget["spec"]["selector"]["matchLabels"])) == 1, budget


@all_trees
def test_the_model_comes_read_only_from_the_claimed_volume(tree):
    resources = rendered(tree)
    claim = find(resources, "PersistentVolumeClaim", "pdserve-models")
    model = find(resources, "ConfigMap", "pdserve-config")["data"]["model"]
    assert model.startswith("/models/") and model.endswith(".gguf"), model
    for deployment in deployments(resources):
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = [m for m in only_container(deployment)["volumeMounts"] if m["mountPath"] == "/models"]
        assert len(mounts) == 1 and mounts[0]["readOnly"] is True, mounts
        source = volumes[mounts[0]["name"]]["persistentVolumeClaim"]
        assert source["claimName"] == claim["metadata"]["name"] and source["readOnly"] is True
        assert flag(only_container(deployment), "model") == "$(PDSERVE_MODEL)"


@all_trees
def test_prometheus_scrapes_the_port_that_serves_metrics(tree):
    for deployment in deployments(rendered(tree)):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        container = only_container(deployment)
        port = int(annotations["prometheus.io/port"])
        if deployment["metadata"]["name"] == "pdserve-router":
            assert port == port_named(container, "http")  # GET /metrics beside the HTTP API
        else:
            assert port == port_named(container, "metrics") == int(flag(container,
                                                                         "metrics-port"))


@all_trees
def test_containers_run_unprivileged_with_resource_limits(tree):
    for deployment in deployments(rendered(tree)):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        container = only_container(deployment)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), (kind, container)


def test_the_overlays_change_the_prefill_decode_ratio_and_what_they_patch():
    base = rendered(K8S_DIR / "base")

    def ratio(resources) -> tuple:
        return tuple(find(resources, "Deployment", n)["spec"]["replicas"] for n in WORKERS)

    for overlay in OVERLAYS:
        resources = rendered(overlay)
        assert ratio(resources) != ratio(base), (overlay.name, ratio(resources))
        assert [lib.key(r) for r in resources] == [lib.key(r) for r in base], overlay.name
    small = rendered(K8S_DIR / "overlays" / "cpu-small")
    assert ratio(small) == (1, 1) and ratio(base) == (1, 2)
    assert find(small, "ConfigMap", "pdserve-config")["data"] == {
        **find(base, "ConfigMap", "pdserve-config")["data"], "threads": "1"}
    decode = only_container(find(small, "Deployment", "pdserve-decode"))
    assert decode["resources"]["limits"]["cpu"] == "1"
    assert decode["args"] == only_container(find(base, "Deployment", "pdserve-decode"))["args"]
    claim = find(small, "PersistentVolumeClaim", "pdserve-models")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
