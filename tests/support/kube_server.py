"""A real Kubernetes control plane for tests, started once per test session.

etcd (Debian's ``etcd-server``), kube-apiserver, kube-controller-manager, kube-scheduler and
one ``kubemark`` hollow node, built by ``scripts/kubernetes/build.sh`` (v1.20.2 with the
pod-deletion-cost backport; cached outside the work tree). Every process listens on free
loopback ports only, keeps its files in a temporary directory, and is stopped by pid at the
end. The API server serves HTTPS with token authentication and RBAC: the tests set up what
``deploy/kubernetes`` describes (the worker's service account and its Roles) with an admin
token, then hand Slipway a kubeconfig holding the service account's own token, so a right
missing from the manifests fails the test as it would fail in production.

The hollow node runs no containers: its pods become Running and Ready as soon as they are
scheduled. Tests that need a pod to crash use the emulator (tests/support/kube.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from tests.support.kube_health import HealthServer, pod_address

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "kubernetes" / "build.sh"
MANIFESTS = REPO / "deploy" / "kubernetes"
START_TIMEOUT = 90.0
STOP_GRACE = 10.0
NODE = "hollow-node-1"
# Where deploy/kubernetes installs Slipway (kustomization.yaml) and the account it acts as.
SLIPWAY_NAMESPACE = "slipway"
WORKER_ACCOUNT = "slipway-worker"
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def binaries() -> Path:
    """The server binaries' directory; build.sh builds them first when they are missing."""
    done = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=1800,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/kubernetes/build.sh failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def write_kubeconfig(path: Path, url: str, ca_file: Path, token: str, user: str) -> Path:
    """A kubeconfig (JSON is YAML) with one context: this server, as ``user``'s token."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": user,
        "clusters": [{"name": "test", "cluster": {"server": url,
                                                  "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}],
    }))
    path.chmod(0o600)
    return path


@dataclass
class KubeServer:
    """A running control plane: its address, CA, admin access and helpers to shape it."""

    url: str
    ca_file: Path
    admin_token: str
    root: Path
    health: HealthServer
    version: str = ""
    _processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _commands: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)

    # -- admin side (what an operator does with kubectl) ------------------------------------

    def admin(self) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.api_key = {"authorization": f"Bearer {self.admin_token}"}
        return client.ApiClient(configuration)

    def get(self, path: str, **query: str) -> dict[str, Any]:
        """``GET path`` as the admin, the JSON as a dict (tests read objects as kubectl -o
        json shows them)."""
        found = self.find(path, **query)
        if found is None:
            raise LookupError(f"{path} not found")
        return found

    def find(self, path: str, **query: str) -> dict[str, Any] | None:
        """Like :meth:`get`, but None when the object does not exist (404)."""
        try:
            return self.send("GET", path + (f"?{urllib.parse.urlencode(query)}" if query
                                            else ""))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def send(self, method: str, path: str, body: dict[str, Any] | None = None
             ) -> dict[str, Any]:
        """One request as the admin; PATCH bodies are JSON merge patches."""
        headers = {"Authorization": f"Bearer {self.admin_token}",
                   "Content-Type": "application/merge-patch+json" if method == "PATCH"
                   else "application/json"}
        request = urllib.request.Request(
            self.url + path, method=method, headers=headers,
            data=None if body is None else json.dumps(body).encode())
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return dict(json.loads(answer.read()))

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        """Live pods (not terminating) of a namespace matching a label selector."""
        found = self.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector)
        return [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]

    def apply(self, manifest: Path, namespace: str | None = None,
              replace: dict[str, str] | None = None) -> None:
        """Create the objects of a manifest file as ``kubectl apply -f`` would on a fresh
        cluster, with ``replace`` substituted in its text first."""
        text = manifest.read_text()
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        objects = [doc for doc in yaml.safe_load_all(text) if doc]
        with self.admin() as api:
            for obj in objects:
                try:
                    utils.create_from_dict(api, obj, namespace=namespace)
                except utils.FailToCreateError as error:
                    if any(getattr(e, "status", 0) != 409 for e in error.api_exceptions):
                        raise

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        with self.admin() as api:
            client.CoreV1Api(api).create_namespace(client.V1Namespace(
                metadata=client.V1ObjectMeta(name=name, labels=labels or {})))

    def delete_namespace(self, name: str) -> None:
        with self.admin() as api, contextlib.suppress(ApiException):
            client.CoreV1Api(api).delete_namespace(name)

    def account_token(self, namespace: str, account: str) -> str:
        """The service account's token, from the Secret the token controller made for it."""
        deadline = time.monotonic() + 30
        while True:
            for secret in self.get(f"/api/v1/namespaces/{namespace}/secrets")["items"]:
                owner = secret["metadata"].get("annotations", {}).get(
                    "kubernetes.io/service-account.name")
                token = (secret.get("data") or {}).get("token")
                if owner == account and token and \
                        secret["type"] == "kubernetes.io/service-account-token":
                    return base64.b64decode(token).decode()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no token for service account {namespace}/{account}")
            time.sleep(0.2)

    def install_worker_account(self, namespace: str = SLIPWAY_NAMESPACE) -> str:
        """deploy/kubernetes/serviceaccount.yaml in ``namespace``; returns its token."""
        with contextlib.suppress(ApiException):
            self.create_namespace(namespace)
        self.apply(MANIFESTS / "serviceaccount.yaml", namespace=namespace)
        return self.account_token(namespace, WORKER_ACCOUNT)

    def grant_environment(self, env_namespace: str,
                          account_namespace: str = SLIPWAY_NAMESPACE) -> None:
        """deploy/kubernetes/rbac.yaml for one environment namespace, as README says."""
        self.apply(MANIFESTS / "rbac.yaml", namespace=env_namespace,
                   replace={"ENV_NAMESPACE": env_namespace,
                            f"namespace: {SLIPWAY_NAMESPACE}": f"namespace: {account_namespace}"})

    def kubeconfig(self, path: Path, token: str, user: str = WORKER_ACCOUNT) -> Path:
        return write_kubeconfig(path, self.url, self.ca_file, token, user)

    def steps(self, namespace: str) -> list[tuple[str, str, Any]]:
        """What the API server was asked to do in ``namespace``, in order, from its audit
        log: ``("scale", deployment, replicas)`` and ``("delete", deployment, None)`` by
        Slipway, ``("traffic", pod, "on"|"off")`` when Slipway relabels a pod, and
        ``("evict", pod, its traffic label)`` when the ReplicaSet controller deletes a pod."""
        found: list[tuple[str, str, Any]] = []
        for line in (self.root / "audit.log").read_text().splitlines():
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            code = (event.get("responseStatus") or {}).get("code", 0)
            if ref.get("namespace") != namespace or not 200 <= code < 300:
                continue
            step = _step(event, ref)
            if step is not None:
                found.append(step)
        return found

    # -- processes --------------------------------------------------------------------------

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self._commands[name] = (command, env)
        log = (self.root / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, **(env or {})})
        log.close()
        self._processes.append((name, process))

    def revive(self, name: str, ready: Callable[[], bool], seconds: float = 60.0) -> bool:
        """Start process ``name`` again if it has exited (kubemark's hollow kubelet of 1.20
        can die of a Go "concurrent map writes"), then wait until ``ready``; True when it
        had died. The tests of the session after it then run on a working node."""
        for index, (known, process) in enumerate(self._processes):
            if known == name and process.poll() is not None:
                command, env = self._commands[name]
                del self._processes[index]
                self.start(name, command, env)
                _wait(f"{name} (started again)", self, ready, time.monotonic() + seconds)
                return True
        return False

    def revive_node(self) -> bool:
        """The hollow node started again if it died; True when it had."""
        return self.revive("hollow-node", lambda: _node_ready(self))

    def stop(self) -> None:
        """Stop every process this control plane started, newest first, by its pid."""
        for _name, process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(STOP_GRACE)
        self._processes.clear()

    def failed(self) -> str:
        """The last log lines of a process that exited, else an empty string."""
        for name, process in self._processes:
            if process.poll() is not None:
                log = (self.root / "logs" / f"{name}.log").read_text(errors="replace")
                return f"{name} exited with {process.returncode}:\n{log[-3000:]}"
        return ""


def _step(event: dict[str, Any], ref: dict[str, Any]) -> tuple[str, str, Any] | None:
    verb, resource, name = event["verb"], ref.get("resource"), ref.get("name", "")
    body = event.get("requestObject") or {}
    if resource == "deployments" and verb in ("create", "patch", "update"):
        replicas = (body.get("spec") or {}).get("replicas")
        return None if replicas is None else ("scale", name or body["metadata"]["name"],
                                              replicas)
    if resource == "deployments" and verb == "delete":
        return ("delete", name, None)
    if resource == "pods" and verb == "patch":
        traffic = ((body.get("metadata") or {}).get("labels") or {}).get("traffic")
        return None if traffic is None else ("traffic", name, traffic)
    if resource == "pods" and verb == "delete" and event["user"]["username"].endswith(
            ":replicaset-controller"):
        labels = ((event.get("responseObject") or {}).get("metadata") or {}).get("labels")
        return ("evict", name, (labels or {}).get("traffic"))
    return None


# The audit policy: what the worker's accounts change (with the request), and the pods the
# ReplicaSet controller deletes (with the pod, for its labels). Nothing else is written.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Request", "verbs": ["create", "patch", "update", "delete"],
         "userGroups": ["system:serviceaccounts:slipway", "system:serviceaccounts:slipway-lanes"],
         "resources": [{"group": "apps", "resources": ["deployments", "deployments/scale"]},
                       {"group": "", "resources": ["pods", "services", "namespaces"]}]},
        {"level": "RequestResponse", "verbs": ["delete"],
         "users": ["system:serviceaccount:kube-system:replicaset-controller"],
         "resources": [{"group": "", "resources": ["pods"]}]},
        {"level": "None"},
    ],
}


def _wait(what: str, server: KubeServer, ready: Any, deadline: float) -> None:
    while not ready():
        if problem := server.failed():
            raise RuntimeError(f"the test control plane did not start: {problem}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test control plane did not start: {what} not ready "
                               f"within {START_TIMEOUT:.0f}s (logs in {server.root}/logs)")
        time.sleep(0.1)


def _healthy(url: str, ca_file: Path | None = None, token: str = "") -> bool:
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file and ca_file.exists() \
        else ssl._create_unverified_context()  # noqa: S323  (a loopback health probe)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _node_ready(server: KubeServer) -> bool:
    with server.admin() as api:
        try:
            node = client.CoreV1Api(api).read_node(NODE)
        except ApiException:
            return False
    return any(c.type == "Ready" and c.status == "True"
               for c in (node.status.conditions if node.status else None) or [])


@contextlib.contextmanager
def kube_server() -> Iterator[KubeServer]:
    """Start the control plane and a hollow node; stop them (by pid) and remove their files."""
    bin_dir = binaries()
    etcd = shutil.which("etcd")
    if etcd is None:
        raise RuntimeError("etcd not found: scripts/kubernetes/build.sh installs etcd-server")
    root = Path(tempfile.mkdtemp(prefix="slipway-kube-"))
    for sub in ("logs", "pki", "certs", "etcd"):
        (root / sub).mkdir()
    ports = {name: _free_port() for name in
             ("etcd", "peer", "api", "kcm", "scheduler", "kubelet", "kubelet_ro", "healthz")}
    token = secrets.token_hex(16)
    # The admin: group system:masters, as kubeadm's admin.conf. Only the tests use it.
    (root / "pki" / "tokens.csv").write_text(f'{token},admin,1,"system:masters"\n')
    subprocess.run(["openssl", "genrsa", "-out", str(root / "pki" / "sa.key"), "2048"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(root / "pki" / "sa.key"), "-pubout", "-out",
                    str(root / "pki" / "sa.pub")], check=True, capture_output=True)
    (root / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
    url = f"https://127.0.0.1:{ports['api']}"
    ca_file = root / "certs" / "apiserver.crt"  # self-signed by the API server at start
    server = KubeServer(url=url, ca_file=ca_file, admin_token=token, root=root,
                        health=HealthServer(pod_address()))
    admin_config = root / "admin.kubeconfig"
    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['peer']}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        server.start("etcd", [
            etcd, "--name", "test", "--data-dir", str(root / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"test={peer_url}", "--unsafe-no-fsync"])
        server.start("apiserver", [
            str(bin_dir / "kube-apiserver"), f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['api']}",
            f"--cert-dir={root / 'certs'}", f"--token-auth-file={root / 'pki' / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={root / 'pki' / 'sa.pub'}",
            f"--service-account-signing-key-file={root / 'pki' / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16", "--advertise-address=127.0.0.1",
            f"--audit-policy-file={root / 'audit-policy.json'}",
            f"--audit-log-path={root / 'audit.log'}", "--audit-log-mode=blocking"])
        _wait("kube-apiserver", server,
              lambda: _healthy(f"{url}/readyz", ca_file, token), deadline)
        write_kubeconfig(admin_config, url, ca_file, token, "admin")
        common = [f"--kubeconfig={admin_config}", f"--authentication-kubeconfig={admin_config}",
                  f"--authorization-kubeconfig={admin_config}", "--bind-address=127.0.0.1",
                  "--port=0", "--leader-elect=false"]
        server.start("controller-manager", [
            str(bin_dir / "kube-controller-manager"), *common,
            f"--secure-port={ports['kcm']}",
            f"--service-account-private-key-file={root / 'pki' / 'sa.key'}",
            f"--root-ca-file={ca_file}",
            # Each controller as its own service account, as clusters run them: the audit
            # log then tells the ReplicaSet controller's deletions apart.
            "--use-service-account-credentials=true",
            # Only the controllers a cluster without cloud, volumes or CSRs needs.
            "--controllers=*,-nodeipam,-attachdetach,-persistentvolume-binder,"
            "-persistentvolume-expander,-pv-protection,-pvc-protection,-csrsigning,"
            "-csrapproving,-csrcleaner,-cloud-node-lifecycle,-route,-service"])
        server.start("scheduler", [
            str(bin_dir / "kube-scheduler"), *common, f"--secure-port={ports['scheduler']}"])
        _wait("controller-manager and scheduler", server,
              lambda: _healthy(f"https://127.0.0.1:{ports['kcm']}/healthz")
              and _healthy(f"https://127.0.0.1:{ports['scheduler']}/healthz"), deadline)
        server.start("hollow-node", [
            str(bin_dir / "kubemark"), "--morph=kubelet", f"--name={NODE}",
            f"--kubeconfig={admin_config}", f"--kubelet-port={ports['kubelet']}",
            f"--kubelet-read-only-port={ports['kubelet_ro']}"],
            env={"SLIPWAY_HOLLOW_POD_IP": server.health.address})
        _wait("the hollow node", server, lambda: _node_ready(server), deadline)
        with server.admin() as api:
            server.version = str(client.VersionApi(api).get_code().git_version)
        yield server
    finally:
        server.stop()
        server.health.close()
        shutil.rmtree(root, ignore_errors=True)
