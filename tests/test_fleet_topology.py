"""docker-compose.temporal.yml and deploy/kubernetes/ describe one topology (docs/operations.md,
"From one machine to a fleet"): PostgreSQL, Temporal with its search attributes, the server,
two orchestration workers, and one host agent per Docker host polling its host's task queue,
every Slipway process on PostgreSQL, and no secret written in either.

The compose file is read as `docker-compose config` resolves it when docker-compose is
installed, else with PyYAML and its `${VAR:-default}` defaults; the manifests with PyYAML, and
rendered by `kubectl kustomize` when kubectl is installed (nothing is applied).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.settings import Cluster
from workflows import search

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.temporal.yml"
DEPLOY = REPO / "deploy" / "kubernetes"
AGENT_UNIT = DEPLOY / "slipway-agent.service"
DOCKER_SOCKET = "/var/run/docker.sock"
STATE_DIR = "/var/lib/slipway"
SECRET_NAMES = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|CREDENTIAL|DATABASE_URL", re.IGNORECASE)
# user:password@ in a URL
URL_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


# ------------------------------------------------------------------------ compose


def _interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` / `${VAR}` / `$$` with an empty environment."""
    if isinstance(value, str):
        value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}",
                       lambda match: match.group(1) or "", value)
        return value.replace("$$", "$")
    if isinstance(value, dict):
        return {key: _interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item) for item in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        model = _interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))
    else:
        result = subprocess.run(
            [binary, "-f", str(COMPOSE_FILE), "config"], cwd=REPO, capture_output=True,
            text=True, timeout=60, env={"PATH": "/usr/local/bin:/usr/bin:/bin",
                                        "HOME": str(REPO)})
        assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
        model = yaml.safe_load(result.stdout)
    assert isinstance(model, dict)
    return model


def _compose_env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def _command(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(command)


# ------------------------------------------------------------------------ kubernetes


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object kustomization.yaml lists, by (kind, name)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    objects = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / resource).read_text()):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    [container] = _pod(obj)["containers"]
    return container


def _k8s_env(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in _container(obj).get("env", [])}


def _settings(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    return manifests[("ConfigMap", "slipway-settings")]["data"]


def _reads_settings(obj: dict[str, Any]) -> bool:
    return {"configMapRef": {"name": "slipway-settings"}} in _container(obj).get("envFrom", [])


def _secret(entry: dict[str, Any]) -> dict[str, Any]:
    return entry["valueFrom"]["secretKeyRef"]


# ------------------------------------------------------------------------ the topology


def test_both_run_the_same_processes(compose: dict[str, Any],
                                     manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    services = compose["services"]
    assert {"postgresql", "temporal", "temporal-ui", "temporal-admin-tools", "server", "worker",
            "agent"} <= set(services)
    # Kubernetes: Temporal, its Web UI and PostgreSQL are prerequisites the settings point at.
    settings = _settings(manifests)
    assert settings["SLIPWAY_TEMPORAL_ADDRESS"] and settings["SLIPWAY_TEMPORAL_UI_URL"]
    assert {("Deployment", "slipway-receiver"), ("Deployment", "slipway-worker-0-1-0"),
            ("DaemonSet", "slipway-agent"), ("Job", "slipway-search-attributes")} <= set(manifests)
    for kind, name in (("Deployment", "slipway-receiver"), ("Deployment", "slipway-worker-0-1-0"),
                       ("DaemonSet", "slipway-agent")):
        assert _reads_settings(manifests[(kind, name)]), name
    assert "server" in _command(services["server"])
    assert _container(manifests[("Deployment", "slipway-receiver")])["command"][:2] == [
        "slipway", "server"]


def test_two_orchestration_workers_each(compose: dict[str, Any],
                                        manifests: dict[tuple[str, str], dict[str, Any]]
                                        ) -> None:
    worker = compose["services"]["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "command" not in worker  # the image's CMD
    assert 'CMD ["python", "worker.py"]' in (REPO / "Dockerfile").read_text()
    deployment = manifests[("Deployment", "slipway-worker-0-1-0")]
    assert deployment["spec"]["replicas"] == 2
    assert _container(deployment)["command"] == ["python", "worker.py"]
    # Orchestration workers need no particular host: no host network, no Docker socket.
    assert not _pod(deployment).get("hostNetwork")
    assert DOCKER_SOCKET not in json.dumps(_pod(deployment))


def test_an_agent_per_docker_host_on_its_own_queue(compose: dict[str, Any],
                                                    manifests: dict[tuple[str, str],
                                                                    dict[str, Any]]) -> None:
    services = compose["services"]
    agent, worker = services["agent"], services["worker"]
    env = _compose_env(agent)
    # Compose: this machine is host h1 of a Docker cluster, and its load-balancer host.
    assert "python agent.py" in _command(agent)
    assert agent.get("deploy", {}).get("replicas", 1) == 1  # exactly one per host
    assert agent["network_mode"] == "host"
    assert f"{DOCKER_SOCKET}:{DOCKER_SOCKET}" in " ".join(str(v) for v in agent["volumes"])
    assert env["SLIPWAY_AGENT_HOST"] == "h1"
    # The host queue is <SLIPWAY_TASK_QUEUE>-host-h1: the workers' queue, beside it.
    assert env["SLIPWAY_TASK_QUEUE"] == _compose_env(worker)["SLIPWAY_TASK_QUEUE"] == "slipway"
    clusters = json.loads(env["SLIPWAY_CLUSTERS"])
    assert env["SLIPWAY_CLUSTERS"] == _compose_env(worker)["SLIPWAY_CLUSTERS"]
    [(name, cluster)] = [(name, cluster) for name, cluster in clusters.items()
                         if cluster.get("runtime", "docker") == "docker"]
    [own] = [host for host in cluster["hosts"] if host["name"] == "h1"]
    assert own["engine"] == f"unix://{DOCKER_SOCKET}"
    assert cluster["lb_host"] == "h1"

    # Kubernetes: a DaemonSet on the Docker nodes, host NAME = the node's name.
    daemonset = manifests[("DaemonSet", "slipway-agent")]
    pod, container = _pod(daemonset), _container(daemonset)
    assert container["command"] == ["python", "agent.py"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"  # Temporal's Service name resolves
    assert _k8s_env(daemonset)["SLIPWAY_AGENT_HOST"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "SLIPWAY_TASK_QUEUE" in _settings(manifests)  # from the ConfigMap, as the workers
    sockets = [volume for volume in pod["volumes"]
               if volume.get("hostPath", {}).get("path") == DOCKER_SOCKET]
    assert [volume["hostPath"]["type"] for volume in sockets] == ["Socket"]
    assert {"name": sockets[0]["name"], "mountPath": DOCKER_SOCKET} in container["volumeMounts"]
    [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    expressions = {e["key"]: (e["operator"], e["values"]) for e in term["matchExpressions"]}
    assert expressions["slipway.dev/docker-host"] == ("In", ["true"])
    # The load-balancer host's agent runs under systemd: its HAProxy outlives the agent.
    assert expressions["slipway.dev/lb-host"] == ("NotIn", ["true"])
    assert pod.get("automountServiceAccountToken") is False


def test_the_load_balancer_hosts_agent_stops_alone() -> None:
    unit = AGENT_UNIT.read_text()
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1]
             for line in unit.splitlines() if "=" in line and not line.startswith("#")}
    assert lines["KillMode"] == "process"  # HAProxy keeps serving when the agent stops
    assert lines["ExecStart"].endswith("agent.py")
    assert lines["Environment"] == f"SLIPWAY_STATE_DIR={STATE_DIR}"
    assert lines["EnvironmentFile"] == "/etc/slipway/agent.env"  # secrets stay out of the unit


def test_the_docker_clusters_name_their_load_balancer_host(
        compose: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    for source in (_compose_env(compose["services"]["agent"])["SLIPWAY_CLUSTERS"],
                   _settings(manifests)["SLIPWAY_CLUSTERS"]):
        docker = [cluster for cluster in json.loads(source).values()
                  if cluster.get("runtime", "docker") == "docker"]
        assert docker, source
        for cluster in docker:
            names = [host["name"] for host in cluster["hosts"]]
            assert cluster.get("lb_host", names[0]) in names
            # Each host's engine is its agent's local socket, the one the agents mount.
            assert {host["engine"] for host in cluster["hosts"]} == {f"unix://{DOCKER_SOCKET}"}


def test_the_compose_clusters_are_valid_settings(compose: dict[str, Any]) -> None:
    clusters = json.loads(_compose_env(compose["services"]["agent"])["SLIPWAY_CLUSTERS"])
    for cluster in clusters.values():
        Cluster.model_validate(cluster)


def test_the_kubernetes_clusters_are_valid_settings(
        manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    for cluster in json.loads(_settings(manifests)["SLIPWAY_CLUSTERS"]).values():
        Cluster.model_validate(cluster)


def test_workers_and_agents_share_one_postgresql_catalogue(
        compose: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    services = compose["services"]
    urls = {name: _compose_env(services[name])["SLIPWAY_DATABASE_URL"]
            for name in ("worker", "agent", "server")}
    assert len(set(urls.values())) == 1, urls
    assert urls["agent"].startswith("postgresql+psycopg://")
    assert urls["agent"].endswith("/slipway")
    assert _compose_env(services["postgresql"])["POSTGRES_DB"] == "slipway"
    for kind, name in (("Deployment", "slipway-worker-0-1-0"), ("DaemonSet", "slipway-agent"),
                       ("Deployment", "slipway-receiver")):
        entry = _k8s_env(manifests[(kind, name)])["SLIPWAY_DATABASE_URL"]
        assert _secret(entry) == {"name": "slipway-secrets", "key": "database-url"}, name
    readme = (DEPLOY / "README.md").read_text()
    assert "--from-literal=database-url='postgresql+psycopg://" in readme


def test_every_slipway_process_uses_one_state_directory_path(
        compose: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The stack's label on containers derives from the state directory's path."""
    for name in ("worker", "agent", "server"):
        assert _compose_env(compose["services"][name])["SLIPWAY_STATE_DIR"] == STATE_DIR
    assert _settings(manifests)["SLIPWAY_STATE_DIR"] == STATE_DIR
    assert "SLIPWAY_STACK_ID" not in _settings(manifests)
    daemonset = manifests[("DaemonSet", "slipway-agent")]
    mounts = {m["mountPath"]: m["name"] for m in _container(daemonset)["volumeMounts"]}
    [state] = [v for v in _pod(daemonset)["volumes"] if v["name"] == mounts[STATE_DIR]]
    assert state["hostPath"]["path"] == STATE_DIR  # the LB host's systemd agent: the same


def test_both_register_the_search_attributes(
        compose: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    job = compose["services"]["temporal-admin-tools"]
    k8s_job = _container(manifests[("Job", "slipway-search-attributes")])
    for script in (" ".join(job["command"]), " ".join(k8s_job["args"])):
        assert "search-attribute create" in script and "--type Keyword" in script
        for key in search.ALL:
            assert key.name in script
    assert _pod(manifests[("Job", "slipway-search-attributes")])["restartPolicy"] == "OnFailure"


# ------------------------------------------------------------------------ no secrets inline


def test_compose_writes_no_secret() -> None:
    """Read raw: a secret is an interpolation of the caller's environment or nothing."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        for key, value in _compose_env(service).items():
            if SECRET_NAMES.search(key) and value is not None:
                assert "${" in str(value), f"{name}: {key} is written in the file"
            if value is not None:
                password = URL_PASSWORD.search(str(value))
                assert password is None or "${" in password.group(), f"{name}: {key}"
    assert raw["services"]["agent"]["environment"]["SLIPWAY_CREDENTIALS"] is None


def test_kubernetes_writes_no_secret(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    settings = _settings(manifests)
    assert not [key for key in settings if SECRET_NAMES.search(key)]
    assert not [value for value in settings.values() if URL_PASSWORD.search(value)]
    assert not [kind for kind, _ in manifests if kind == "Secret"]
    for (kind, name), obj in manifests.items():
        if kind not in ("Deployment", "DaemonSet", "Job"):
            continue
        for entry in _container(obj).get("env", []):
            if SECRET_NAMES.search(entry["name"]):
                assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name}: {entry['name']}"
            assert not URL_PASSWORD.search(str(entry.get("value", ""))), name
        # Nothing binds a port on the node beyond the agents' host network.
        for port in _container(obj).get("ports", []):
            assert "hostPort" not in port, name


def test_kustomize_renders_the_same_objects(
        manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in rendered} == set(manifests)
    assert {doc["metadata"]["namespace"] for doc in rendered} == {"slipway"}
