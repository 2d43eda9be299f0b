"""Slipway settings: ``SLIPWAY_``-prefixed environment variables, each with a working default.

Secrets never travel through workflows: a workflow carries a credential *name* and an
integration resolves it here, at call time, with :meth:`Settings.credential`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.service import TLSConfig

from schemas.versioning import DEPLOYMENT_PATTERN, BuildId, check_build_id, detect_build_id


def _default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "slipway"


class DockerHost(BaseModel):
    """One Docker host of a cluster: its engine, and the address its replicas publish on
    (the load balancer and the health probes reach replicas at ``address:<port>``)."""

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
    engine: str
    # Empty: the cluster's publish_host (loopback by default, right for one local engine).
    address: str = ""
    # What the host is (zone, disk, role), for choosing hosts by label in later releases.
    labels: dict[str, str] = Field(default_factory=dict)
    # At most this many replicas of this stack on the host, all environments together;
    # 0: no limit.
    capacity: int = Field(default=0, ge=0)


class Cluster(BaseModel):
    """Where environments run: Docker hosts behind HAProxy, or a Kubernetes context."""

    runtime: str = "docker"
    # docker: the hosts replicas spread over, each with its engine and the address its
    # replicas publish on: SLIPWAY_CLUSTERS='{"fleet": {"hosts": [{"name": "h1",
    # "engine": "tcp://10.0.0.11:2376", "address": "10.0.0.11", "capacity": 8}, …]}}'.
    hosts: list[DockerHost] = Field(default_factory=list)
    # The shorter form, for hosts that all publish on one address (one local engine:
    # loopback, so a single-host cluster needs nothing else): each engine becomes a host
    # h1, h2, … publishing on publish_host. With hosts given, engines lists their engines.
    engines: list[str] = Field(default_factory=lambda: ["unix:///var/run/docker.sock"])
    publish_host: str = "127.0.0.1"
    # docker: the host whose agent runs the environments' HAProxy (default: the first).
    lb_host: str = ""
    # kubernetes: kubeconfig file and context, or the pod's service account when in_cluster.
    kubeconfig: str = ""
    context: str = ""
    in_cluster: bool = False
    # Names of image pull secrets every Deployment references (never their contents).
    image_pull_secrets: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _hosts_and_engines(self) -> Cluster:
        """One list of hosts whichever form was given; ``engines`` always names their
        engines (what reads only engines, such as the builder, stays right)."""
        if not self.hosts:
            if not self.engines:
                raise ValueError("a cluster needs at least one Docker host (hosts or engines)")
            self.hosts = [DockerHost(name=f"h{number}", engine=engine)
                          for number, engine in enumerate(self.engines, start=1)]
        engines = [host.engine for host in self.hosts]
        if "engines" in self.model_fields_set and self.engines != engines:
            raise ValueError("give hosts or engines, not both (engines must list the hosts' "
                             f"engines: {engines})")
        # Engines may repeat: hosts served by their agents (agent.py) each name their own
        # local socket; only a cluster without agents reaches every engine from the workers.
        names = [host.name for host in self.hosts]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError("two hosts of a cluster have the same name: " + ", ".join(repeated))
        self.hosts = [host if host.address else host.model_copy(
            update={"address": self.publish_host}) for host in self.hosts]
        self.engines = engines
        if self.lb_host and self.lb_host not in {host.name for host in self.hosts}:
            raise ValueError(f"lb_host {self.lb_host!r} is not one of the cluster's hosts")
        self.lb_host = self.lb_host or self.hosts[0].name
        return self


# The checkout this code runs from.
CHECKOUT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Every knob of Slipway. Read once per process with :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", env_nested_delimiter="__")

    state_dir: Path = Field(default_factory=_default_state_dir)
    database_url: str = ""

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    # mTLS to the Temporal frontend (production: with a namespace authorizer, see
    # docs/security.md). PEM files; a CA alone is server-verified TLS without a client cert.
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_ui_url: str = "http://localhost:8233"
    temporal_ui_port: int = 8233
    task_queue: str = "slipway"
    # Worker Versioning (docs/operations.md, "Upgrading Slipway"): orchestration workers
    # declare a deployment (default: the task queue) and a build ID (default: the package
    # version and the git commit), so runs pinned to a build finish on it. A new build gets
    # workflow tasks once it is current: `first` makes it current when its deployment has
    # none yet (a first start), `always` at every start (the embedded stack's one worker),
    # `never` leaves it to `slipway worker promote`. There is no "off": every workflow type
    # declares its behaviour, which Temporal refuses from an unversioned worker.
    worker_deployment: str = ""
    build_id: str = ""
    worker_promote: Literal["first", "always", "never"] = "first"
    # The HTTP API (`slipway server`); `slipway up` starts it on loopback at this port.
    server_port: int = 8470

    clusters: dict[str, Cluster] = Field(default_factory=lambda: {"local": Cluster()})
    default_cluster: str = "local"

    haproxy_bin: str = "haproxy"
    lb_port_start: int = 18080
    lb_bind_address: str = "127.0.0.1"

    registry: str = ""
    registry_credential: str = "registry"
    registry_insecure: bool = True
    base_image: str = "slipway/busybox:local"

    # Code-host account -> Slipway user, e.g. SLIPWAY_IDENTITIES='{"gitlab:alice.w": "alice"}':
    # who requested a release through a webhook, in the namespace approvers are named in.
    identities: dict[str, str] = Field(default_factory=dict)

    # Credential name -> value, e.g. SLIPWAY_CREDENTIALS='{"registry": "ci:secret"}'.
    credentials: dict[str, SecretStr] = Field(default_factory=dict)

    # Approval links in approval notifications (DingTalk, webhook): the receiver's address
    # as approvers reach it, and the credential whose value signs the links (shared by the
    # worker, which makes them, and the receiver, which they land on; a link decides only
    # with its approver's own API token). Either empty: no links.
    receiver_url: str = ""
    approval_link_credential: str = "approval-links"
    # The secret every approval proof is signed with, combined with the approver's API token
    # (docs/security.md): a credential name. The worker (which checks proofs), the receiver
    # and approvers' CLIs (which sign them) share it. When it is not configured, a secret is
    # generated into the state directory on first use (mode 0600): the embedded stack's
    # processes share that directory.
    approval_signing_credential: str = "approval-signing"

    # Local build sources must lie under one of these (symlinks resolved). Default: this
    # checkout (its examples/ included), so the demo builds; JSON list to change it.
    source_roots: list[Path] = Field(default_factory=lambda: [CHECKOUT / "examples", CHECKOUT])

    # Labels every container this stack starts; empty: derived from the state directory.
    stack_id: str = ""

    # The janitor never sweeps a lane younger than this (default: the default lane TTL).
    janitor_min_age_seconds: float = 6 * 86400

    drain_timeout_seconds: float = 30.0
    progress_deadline_seconds: float = 600.0
    # A new version whose replica fails the same way this long (restarting after every exit,
    # one health answer such as 404 on every probe) fails its step then, with the reason and
    # its last log lines, instead of at the progress deadline (Docker clusters).
    failing_version_seconds: float = Field(default=30.0, gt=0)
    # A rollback to a baseline replaced less than this long ago skips steps and stable waits
    # (`slipway rollback --gradual` keeps them); 0 makes every rollback gradual.
    fast_rollback_window_seconds: int = Field(default=86400, ge=0)
    # A host whose agent was not seen this long leaves release plans (no new replica, no
    # activity waits for it) until its agent is back.
    host_lost_seconds: float = Field(default=120.0, gt=0)
    # The host a host agent (agent.py) serves: a host name of a Docker cluster.
    agent_host: str = ""
    # HOST:PORT where an orchestration worker serves the Temporal SDK's own metrics (task
    # latencies, slots, polls, schedule-to-start) for Prometheus; empty: not served.
    worker_metrics_address: str = Field(default="", pattern=r"^$|^[\w.\-\[\]:]+:\d{1,5}$")
    # A rollback to a *recent* baseline (one of the last `rollback_recent_baselines` before
    # the current, replaced less than `rollback_recent_seconds` ago) is an emergency undo:
    # no approval under the `auto` policy, and it passes freezes. A rollback to an older
    # baseline needs an approver other than its requester, whatever the policy; `rollback
    # --image` is a release like any other (approval by policy, canary analysis, freezes).
    rollback_recent_baselines: int = Field(default=3, ge=0)
    rollback_recent_seconds: int = Field(default=86400, ge=0)
    # Hosts (``host`` or ``host:port``) the `web` analysis provider may ask, as JSON:
    # SLIPWAY_ANALYSIS_WEB_HOSTS='["127.0.0.1", "metrics.internal:8080"]'. Link-local and
    # cloud metadata addresses are refused even when listed.
    analysis_web_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "::1"])

    def stack_label(self) -> str:
        """This stack's identity on shared engines: SLIPWAY_STACK_ID, else derived from the
        state directory (two stacks on one host have two state directories)."""
        if self.stack_id:
            return self.stack_id
        return "s" + hashlib.sha256(str(Path(self.state_dir).resolve()).encode()).hexdigest()[:10]

    def deployment_name(self) -> str:
        """The worker deployment of this installation's workers (SLIPWAY_WORKER_DEPLOYMENT,
        else the task queue); ValueError when Temporal would refuse it."""
        name = self.worker_deployment or self.task_queue
        if not DEPLOYMENT_PATTERN.match(name):
            raise ValueError(f"worker deployment {name!r} (SLIPWAY_WORKER_DEPLOYMENT, else "
                             "SLIPWAY_TASK_QUEUE): letters, digits, - and _ only, no dot")
        return name

    def worker_build(self) -> BuildId:
        """This checkout's build ID: SLIPWAY_BUILD_ID, else ``<version>-<git commit>``, else
        ``<version>-nogit`` with a note (schemas/versioning.py)."""
        found = detect_build_id(CHECKOUT, self.build_id)
        check_build_id(found.value)
        return found

    def environment(self) -> dict[str, str]:
        """These settings as the ``SLIPWAY_*`` variables that make them again (secrets
        included): what the server gives the processes it runs commands in."""
        def text(value: object) -> str:
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, (dict, list, tuple, BaseModel)):
                return json.dumps(value, default=lambda item: (
                    item.get_secret_value() if isinstance(item, SecretStr)
                    else item.model_dump(mode="python") if isinstance(item, BaseModel)
                    else str(item)))
            return str(value)

        return {f"SLIPWAY_{name.upper()}": text(getattr(self, name))
                for name in type(self).model_fields if getattr(self, name) is not None}

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'slipway.db'}"

    def credential(self, name: str) -> str:
        """The secret value behind a credential name; empty when none is configured."""
        value = self.credentials.get(name)
        return value.get_secret_value() if value else ""

    def approval_signing_secret(self) -> str:
        """The approval signing secret: the configured credential, else this state
        directory's own (generated on first use, readable by its owner only)."""
        return (self.credential(self.approval_signing_credential)
                or state_secret(Path(self.state_dir) / APPROVAL_SIGNING_FILE))

    def temporal_tls(self) -> TLSConfig | bool:
        """The client's TLS settings: False (plain) unless a CA or a client cert is set."""
        if not (self.temporal_tls_ca or self.temporal_tls_cert):
            return False
        if bool(self.temporal_tls_cert) != bool(self.temporal_tls_key):
            raise ValueError("set both SLIPWAY_TEMPORAL_TLS_CERT and SLIPWAY_TEMPORAL_TLS_KEY")
        return TLSConfig(
            server_root_ca_cert=(self.temporal_tls_ca.read_bytes()
                                 if self.temporal_tls_ca else None),
            client_cert=self.temporal_tls_cert.read_bytes() if self.temporal_tls_cert else None,
            client_private_key=(self.temporal_tls_key.read_bytes()
                                if self.temporal_tls_key else None))

    def ui_link(self, workflow_id: str, run_id: str | None = None) -> str:
        base = f"{self.temporal_ui_url.rstrip('/')}/namespaces/{self.temporal_namespace}/workflows"
        return f"{base}/{workflow_id}/{run_id}/history" if run_id else f"{base}/{workflow_id}"


APPROVAL_SIGNING_FILE = "approval-signing.key"


def state_secret(path: Path) -> str:
    """The secret kept in ``path``, created (mode 0600, 32 random bytes) if there is none.

    Several processes may ask at once: each writes a private temporary file and links it into
    place, which fails for all but the first; everyone then reads the one that won."""
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first: use its
            os.link(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
