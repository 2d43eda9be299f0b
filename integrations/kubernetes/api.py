"""Access to one Kubernetes cluster for the runtime and the traffic router.

Builds the official client from the cluster's settings (a kubeconfig file + context, or the
pod's service account) on first use, so a misconfigured Kubernetes cluster cannot stop a worker
that also serves Docker clusters. Every API call goes through :meth:`KubeAccess.call`, which
turns the client's exceptions into Slipway's: permanent ones name the cluster and namespace
and say what to fix; transient ones are retried by the activity's retry policy.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from integrations.errors import (
    ClusterAccessError,
    ClusterConfigError,
    ClusterUnavailableError,
    InvalidSpecError,
    NamespaceMissingError,
)
from schemas.settings import Cluster

T = TypeVar("T")

LABEL_APP = "app"
LABEL_VERSION = "version"
LABEL_ENV = "slipway.env"
LABEL_TRAFFIC = "traffic"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# The ReplicaSet controller deletes the pods with the lowest cost first when it scales down:
# drained pods get this, so scaling down removes exactly the pods already out of the Service.
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
DRAINED_COST = "-1000"
# (connect, read) seconds for every API call: a hung API server must not hang an activity.
REQUEST_TIMEOUT = (5.0, 30.0)
RBAC_HINT = "deploy/kubernetes/rbac.yaml lists the rights Slipway needs"
# The oldest server that removes drained pods first on a scale-down: pod-deletion-cost is
# beta, and on by default, from 1.22 (docs/kubernetes.md). An older server ignores it, and a
# gray step's scale-down could remove pods still in the Service instead of the drained ones.
MIN_SERVER = (1, 22)
# Build metadata of a server that carries the upstream ordering backported (the test
# cluster's v1.20.2+pod-deletion-cost): it behaves as 1.22 does here.
BACKPORT_MARK = "pod-deletion-cost"
OLDEST_BACKPORT = (1, 20)
_GIT_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?(?:\+([0-9A-Za-z.+-]+))?$")


def deployment_name(app: str, version: int) -> str:
    return f"{app}-v{version}"


def version_selector(env_key: str, version: int | None = None) -> str:
    """Label selector of an environment's Deployments/pods, optionally of one version."""
    selector = f"{LABEL_ENV}={env_key}"
    return selector if version is None else f"{selector},{LABEL_VERSION}={version}"


def pod_ready(pod: client.V1Pod) -> bool:
    """The pod's Ready condition is True (its readiness probe passes)."""
    conditions = pod.status.conditions if pod.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


def unsupported_server(git_version: str) -> str | None:
    """Why a server of this version (``GET /version``'s gitVersion) cannot run Slipway's
    releases, or None when it can."""
    match = _GIT_VERSION.match(git_version.strip())
    if match is None:
        return f"its version {git_version!r} cannot be read"
    release = (int(match.group(1)), int(match.group(2)))
    if release >= MIN_SERVER:
        return None
    if release >= OLDEST_BACKPORT and BACKPORT_MARK in re.split(r"[.+]", match.group(3) or ""):
        return None
    return (f"it runs Kubernetes {git_version}; Slipway needs {MIN_SERVER[0]}.{MIN_SERVER[1]} "
            "or newer, because older servers ignore controller.kubernetes.io/pod-deletion-cost "
            "and a gray step's scale-down could then remove pods still serving instead of the "
            "drained ones")


def ungranted_hint(namespace: str) -> str:
    """What to do when the account has no right at all in a namespace. It reads only the
    namespaces it was granted, so the server cannot tell it whether the namespace exists."""
    return (f"Either the namespace does not exist (kubectl create namespace {namespace}) or "
            "deploy/kubernetes/rbac.yaml was not applied to it (deploy/kubernetes/README.md)")


def api_message(error: ApiException) -> str:
    """The API server's own explanation (the Status object's ``message``), else the reason."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(error.reason or error.status)


class KubeAccess:
    """API clients of one cluster, created lazily, and the error mapping around every call."""

    def __init__(self, cluster: Cluster, name: str = "",
                 api_client: client.ApiClient | None = None) -> None:
        self.cluster = cluster
        # Used in messages when an input does not name its cluster.
        self.name = name or cluster.context or "kubernetes"
        self._api_client = api_client
        self._server_checked = False
        self._lock = threading.Lock()

    def _client(self) -> client.ApiClient:
        with self._lock:
            if self._api_client is None:
                self._api_client = client.ApiClient(self._configuration())
            if not self._server_checked:
                self._check_server(self._api_client)
                self._server_checked = True
            return self._api_client

    def _check_server(self, api_client: client.ApiClient) -> None:
        """Refuse, before the first request, a server too old for Slipway's scale-downs."""
        try:
            info = client.VersionApi(api_client).get_code(_request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            raise self._mapped(error, "read the server version", "", self.name) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterUnavailableError(f"cluster {self.name!r} API unreachable, cannot read "
                                          f"the server version: {error}") from error
        why = unsupported_server(str(info.git_version or ""))
        if why is not None:
            raise ClusterConfigError(f"cluster {self.name!r}: {why}. Upgrade the cluster, or "
                                     "point SLIPWAY_CLUSTERS at a supported one")

    @property
    def server_version(self) -> str:
        """The server's gitVersion (checked supported on first use)."""
        info = client.VersionApi(self._client()).get_code(_request_timeout=REQUEST_TIMEOUT)
        return str(info.git_version)

    def _configuration(self) -> client.Configuration:
        configuration = client.Configuration()
        try:
            if self.cluster.in_cluster:
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(config_file=self.cluster.kubeconfig or None,
                                        context=self.cluster.context or None,
                                        client_configuration=configuration,
                                        persist_config=False)
        except (ConfigException, OSError, ValueError) as error:
            where = ("in-cluster service account" if self.cluster.in_cluster
                     else f"kubeconfig {self.cluster.kubeconfig or '~/.kube/config'}"
                     + (f" context {self.cluster.context!r}" if self.cluster.context else ""))
            raise ClusterConfigError(f"cluster {self.name!r}: cannot load the {where}: {error}; "
                                     "fix SLIPWAY_CLUSTERS") from error
        # One quick retry for a dropped keep-alive connection; the activity retries the rest.
        configuration.retries = 1
        return configuration

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self._client())

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self._client())

    def call(self, what: str, namespace: str, fn: Callable[[], T], cluster: str = "") -> T:
        """Run one API call; map its failure to a permanent or a retryable error.

        ``what`` completes "cannot …" in messages, e.g. ``"create deployment shop-v3"``.
        """
        name = cluster or self.name
        try:
            return fn()
        except ApiException as error:
            raise self._mapped(error, what, namespace, name) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterUnavailableError(
                f"cluster {name!r} API unreachable, cannot {what} in namespace {namespace!r}: "
                f"{error}") from error

    def call_or_none(self, what: str, namespace: str, fn: Callable[[], T],
                     cluster: str = "") -> T | None:
        """Like :meth:`call`, but an object that does not exist (404) gives ``None``."""
        try:
            return fn()
        except ApiException as error:
            if error.status == 404 and self.namespace_exists(namespace, cluster):
                return None
            raise self._mapped(error, what, namespace, cluster or self.name) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterUnavailableError(
                f"cluster {cluster or self.name!r} API unreachable, cannot {what} in namespace "
                f"{namespace!r}: {error}") from error

    def _mapped(self, error: ApiException, what: str, namespace: str, name: str) -> Exception:
        status = error.status or 0
        message = api_message(error)
        place = f"cluster {name!r}, namespace {namespace!r}"
        if status == 403 and namespace and not self._may_read(namespace):
            # No right at all in the namespace: it is missing or was never granted.
            return ClusterAccessError(f"{place}: not allowed to {what} (403 {error.reason}): "
                                      f"{message}. {ungranted_hint(namespace)}")
        if status in (401, 403):
            return ClusterAccessError(
                f"{place}: not allowed to {what} ({status} {error.reason}): {message}. "
                f"Check the credentials of the kubeconfig/service account; {RBAC_HINT}")
        if status == 404 and namespace and not self.namespace_exists(namespace, name):
            return NamespaceMissingError(
                f"{place}: the namespace does not exist, cannot {what}. Slipway never creates "
                f"namespaces for releases: create it (kubectl create namespace {namespace}) "
                "or fix the environment's namespace")
        if status in (400, 422):
            return InvalidSpecError(f"{place}: the API rejected the request to {what}: {message}")
        return ClusterUnavailableError(f"{place}: cannot {what} ({status} {error.reason}): "
                                       f"{message}")

    def namespace_exists(self, namespace: str, cluster: str = "") -> bool:
        """True when the namespace exists; 401/403 raise :class:`ClusterAccessError`."""
        try:
            self.core.read_namespace(namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 404:
                return False
            if error.status == 403:
                raise ClusterAccessError(
                    f"cluster {cluster or self.name!r}, namespace {namespace!r}: not allowed "
                    f"to read the namespace (403 Forbidden): {api_message(error)}. "
                    f"{ungranted_hint(namespace)}") from error
            if error.status == 401:
                raise self._mapped(error, f"read namespace {namespace}", namespace,
                                   cluster or self.name) from error
            raise ClusterUnavailableError(
                f"cluster {cluster or self.name!r}: cannot read namespace {namespace!r} "
                f"({error.status} {error.reason}): {api_message(error)}") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterUnavailableError(f"cluster {cluster or self.name!r} API unreachable: "
                                          f"{error}") from error
        return True

    def _may_read(self, namespace: str) -> bool:
        """Whether the account may read the namespace object (rbac.yaml grants that in
        every environment namespace): False only when the server refuses it; a namespace
        that is missing but readable (404), or a failed request, count as readable."""
        try:
            self.core.read_namespace(namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            return error.status == 404
        except (urllib3.exceptions.HTTPError, OSError):
            return True  # unknown: keep the plain message
        return True

    def require_namespace(self, namespace: str, cluster: str = "") -> None:
        """Refuse, before creating anything, to work in a namespace that is missing."""
        if not self.namespace_exists(namespace, cluster):
            name = cluster or self.name
            raise NamespaceMissingError(
                f"cluster {name!r}, namespace {namespace!r}: the namespace does not exist. "
                f"Slipway never creates namespaces for releases: create it (kubectl create "
                f"namespace {namespace}) or fix the environment's namespace")

    def pods(self, namespace: str, selector: str, cluster: str = "") -> list[client.V1Pod]:
        """Live pods (not terminating) matching a label selector, oldest first."""
        found = self.call(f"list pods ({selector})", namespace,
                          lambda: self.core.list_namespaced_pod(
                              namespace, label_selector=selector,
                              _request_timeout=REQUEST_TIMEOUT), cluster)
        live = [p for p in found.items
                if p.metadata is not None and p.metadata.deletion_timestamp is None]
        return sorted(live, key=lambda p: (str(p.metadata.creation_timestamp or ""),
                                           p.metadata.name or "") if p.metadata else ("", ""))

    def patch_pod(self, namespace: str, pod: str, body: dict[str, object],
                  cluster: str = "") -> None:
        """Patch one pod; a pod that went away meanwhile is fine (it left the Service too)."""
        self.call_or_none(f"patch pod {pod}", namespace,
                          lambda: self.core.patch_namespaced_pod(
                              pod, namespace, body, _request_timeout=REQUEST_TIMEOUT,
                              _preload_content=False), cluster)
