"""Catalogue services behind ``slipway app …`` and ``slipway env …``.

Every write validates the whole request before touching the store, so a rejected request leaves
no row and no audit event behind; every accepted write records an audit event in the same
transaction. Errors are :class:`CatalogueError` with one line that names the fix.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from catalogue.store import CatalogueError, Store, audit, find_app, find_env, latest_baseline
from catalogue.tables import Application, Baseline, Environment
from schemas import settings as settings_module
from schemas.analysis import AnalysisPolicy
from schemas.enums import AppCategory, ApprovalPolicy, AppState, AppTier, RuntimeKind, Strategy
from schemas.http import check_health_path
from schemas.settings import Settings
from schemas.sources import SourceRefused, check_source
from starter.service.analysis import check_policy
from starter.service.identity import check_user
from starter.service.tokens import check_team
from starter.service.validation import (
    check_cpu,
    check_memory,
    check_replicas,
    check_rollout,
    policy_text,
)

APP_NAME_MAX = 40
ENV_TYPE_MAX = 20
DEFAULT_PORTS = [8080]

_APP_NAME = re.compile(r"[a-z](?:[a-z0-9-]*[a-z0-9])?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_Choice = TypeVar("_Choice", AppCategory, AppTier)


@dataclass(frozen=True)
class EnvOverview:
    """An environment with the newest baseline that runs in it (None before the first release)."""

    env: Environment
    latest: Baseline | None


@dataclass(frozen=True)
class AppOverview:
    """An application with its environments."""

    app: Application
    envs: list[EnvOverview]


@dataclass(frozen=True)
class EnvDetail:
    """One environment of an application with all its baselines, newest first."""

    app: Application
    env: Environment
    baselines: list[Baseline]


# ---------------------------------------------------------------- applications


def register_app(store: Store, name: str, *, category: AppCategory | str,
                 tier: AppTier | str, owners: list[str], approvers: list[str], source: str,
                 description: str, actor: str, team: str = "") -> Application:
    """Register a new application; it starts ``pending_review``. ``team`` owns it: tokens
    limited to that team act on it (``token create --team``)."""
    _check_app_name(name)
    if team:
        check_team(team)
    category = _choice(AppCategory, category, "category")
    tier = _choice(AppTier, tier, "tier")
    owners = _user_list(owners, "owner")
    approvers = _user_list(approvers, "approver")
    source = _check_source(source)
    with store.session() as session:
        existing = session.exec(select(Application).where(Application.name == name)).first()
        if existing is not None:
            raise CatalogueError(
                f"application {name!r} already exists ({existing.state}); "
                f"see it with `slipway app show {name}`"
            )
        app = Application(name=name, category=category, tier=tier, owners=owners,
                          approvers=approvers, source=source, description=description.strip(),
                          team=team)
        session.add(app)
        audit(session, "app.registered", actor=actor, app=name, category=str(category),
              tier=str(tier), owners=owners, approvers=approvers, source=source, team=team)
        _commit(session, f"application {name!r} was registered concurrently; "
                         f"see it with `slipway app show {name}`")
        return app


def set_source(store: Store, name: str, source: str, actor: str) -> Application:
    """Point the application's builds at another source (checked like a registration's)."""
    return _set_field(store, name, "source", _check_source(source), actor)


def set_team(store: Store, name: str, team: str, actor: str) -> Application:
    """Move the application to ``team`` ("" for none): tokens limited to its old team no
    longer act on it, those limited to the new one do."""
    if team:
        check_team(team)
    return _set_field(store, name, "team", team, actor)


def _set_field(store: Store, name: str, field: str, value: str, actor: str) -> Application:
    """Change one checked field of the application, audited as ``app.<field>_changed`` with
    the previous value; nothing is written when it already has that value."""
    with store.session() as session:
        app = find_app(session, name)
        previous = getattr(app, field)
        if previous != value:
            audit(session, f"app.{field}_changed", actor=actor, app=name,
                  **{field: value, "previous": previous})
            setattr(app, field, value)
            session.add(app)
            session.commit()
            session.refresh(app)
        return app


def mark_ready(store: Store, name: str, actor: str) -> Application:
    """Record that the application passed review: ``pending_review`` → ``ready``."""
    with store.session() as session:
        app = find_app(session, name)
        if app.state != AppState.PENDING_REVIEW:
            raise CatalogueError(
                f"application {name!r} is {app.state}, not {AppState.PENDING_REVIEW}: "
                f"only an application waiting for review can be marked ready"
            )
        return _move(session, app, AppState.READY, actor)


def retire_app(store: Store, name: str, actor: str) -> Application:
    """Take one step towards offline: ready/online → retiring → offline; unreviewed → offline."""
    with store.session() as session:
        app = find_app(session, name)
        if app.state == AppState.OFFLINE:
            raise CatalogueError(f"application {name!r} is already offline: nothing to retire")
        if app.state in (AppState.READY, AppState.ONLINE):
            target = AppState.RETIRING
        else:
            # Retiring → offline is the second step; an app never reviewed has nothing running.
            target = AppState.OFFLINE
        return _move(session, app, target, actor)


def list_apps(store: Store) -> list[AppOverview]:
    """Every application, by name, with its environments."""
    with store.session() as session:
        apps = session.exec(select(Application).order_by(col(Application.name))).all()
        return [AppOverview(app, _env_overviews(session, app)) for app in apps]


def show_app(store: Store, name: str) -> AppOverview:
    """One application with its environments and the latest baseline of each."""
    with store.session() as session:
        app = find_app(session, name)
        return AppOverview(app, _env_overviews(session, app))


# ---------------------------------------------------------------- environments


def add_env(store: Store, app: str, env_type: str, *, cluster: str, replicas: int,
            cpu: str, memory: str, ports: list[int], env_vars: list[str] | dict[str, str],
            runtime: RuntimeKind | str | None, namespace: str, health_path: str,
            settings: Settings,
            actor: str, strategy: Strategy | str | None = None,
            gray_steps: list[str] | None = None, stable_seconds: int = 60, batch_size: int = 1,
            approval: ApprovalPolicy | str = ApprovalPolicy.AUTO,
            approval_timeout_seconds: int = 86400,
            analysis: AnalysisPolicy | None = None) -> Environment:
    """Add an environment (``env_type@cluster``) to an application and give it a load-balancer
    port. Nothing is deployed: the first release does that.

    ``strategy`` defaults to gray in prod (two versions side by side, step by step) and to
    recreate elsewhere; ``gray_steps`` is only meaningful for gray."""
    _check_label(env_type, "environment type", ENV_TYPE_MAX, "e.g. dev, test, staging, prod")
    _check_cluster(cluster, settings)
    # No runtime named: the cluster's own (docker engines, or a Kubernetes context).
    runtime = _check_runtime(runtime or settings.clusters[cluster].runtime, cluster, settings)
    check_replicas(replicas)
    check_cpu(cpu)
    check_memory(memory)
    rollout = check_rollout(env_type, replicas, strategy=strategy, gray_steps=gray_steps,
                            stable_seconds=stable_seconds, batch_size=batch_size,
                            approval=approval, approval_timeout_seconds=approval_timeout_seconds)
    port_list = _check_ports(ports)
    variables = _parse_env_vars(env_vars)
    _check_label(namespace, "namespace", 63, "lowercase letters, digits and '-'")
    try:
        check_health_path(health_path)
    except ValueError as error:
        raise CatalogueError(str(error)) from None
    env_name = f"{env_type}@{cluster}"
    with store.session() as session:
        owner = find_app(session, app)
        if owner.state == AppState.OFFLINE:
            raise CatalogueError(
                f"application {app!r} is offline: an offline application gets no new environments"
            )
        duplicate = session.exec(select(Environment).where(
            Environment.app_id == owner.id, Environment.env_type == env_type,
            Environment.cluster == cluster)).first()
        if duplicate is not None:
            raise CatalogueError(
                f"application {app!r} already has environment {env_name}; "
                f"see it with `slipway env show {app} {env_name}`"
            )
        used = set(session.exec(select(Environment.lb_port)).all())
        lb_port = allocate_lb_port(used, settings.lb_port_start, settings.lb_bind_address)
        env = Environment(app_id=owner.id or 0, env_type=env_type, cluster=cluster,
                          replicas=replicas, cpu=cpu, memory=memory, ports=port_list,
                          env_vars=variables, runtime=runtime, namespace=namespace,
                          health_path=health_path, lb_port=lb_port, **rollout)
        if analysis is not None:
            check_policy(analysis, env, owner.name, settings)
            env.analysis = analysis.model_dump(mode="json")
        session.add(env)
        # Values of env vars may be sensitive: the audit trail keeps only their names.
        audit(session, "env.added", actor=actor, app=app, env=env_name, replicas=replicas,
              cpu=cpu, memory=memory, ports=port_list, env_var_names=sorted(variables),
              runtime=str(runtime), namespace=namespace, lb_port=lb_port,
              **policy_text(rollout))
        _commit(session, f"the catalogue changed while adding {app} {env_name} (another "
                         f"command took the same environment or port); run the command again")
        return env


def list_envs(store: Store, app: str) -> list[EnvOverview]:
    """The environments of one application with the latest baseline of each."""
    with store.session() as session:
        return _env_overviews(session, find_app(session, app))


def show_env(store: Store, app: str, env: str) -> EnvDetail:
    """One environment (``type@cluster`` or just ``type``) with its baselines, newest first."""
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        baselines = session.exec(select(Baseline).where(Baseline.env_id == found.id)
                                 .order_by(col(Baseline.version).desc())).all()
        return EnvDetail(owner, found, list(baselines))


def allocate_lb_port(used: Iterable[int], start: int, host: str = "127.0.0.1") -> int:
    """The lowest port ≥ ``start`` that no environment holds and nothing has bound on ``host``."""
    taken = set(used)
    for port in range(max(start, 1), 65536):
        if port not in taken and port_is_free(host, port):
            return port
    raise CatalogueError(
        f"no free load-balancer port from {start} up to 65535; set SLIPWAY_LB_PORT_START lower"
    )


def port_is_free(host: str, port: int) -> bool:
    """True when a TCP socket can bind ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The load balancer binds with SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------- helpers


def _env_overviews(session: Session, app: Application) -> list[EnvOverview]:
    envs = session.exec(select(Environment).where(Environment.app_id == app.id)
                        .order_by(col(Environment.env_type), col(Environment.cluster))).all()
    return [EnvOverview(env, latest_baseline(session, env.id or 0)) for env in envs]


def _move(session: Session, app: Application, target: AppState, actor: str) -> Application:
    previous = app.state
    app.state = target
    session.add(app)
    audit(session, f"app.{target}", actor=actor, app=app.name, previous=str(previous))
    session.commit()
    return app


def _commit(session: Session, conflict_message: str) -> None:
    """Commit; a unique constraint lost to a concurrent command becomes an actionable error."""
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise CatalogueError(conflict_message) from error


def _check_app_name(name: str) -> None:
    if len(name) > APP_NAME_MAX or not _APP_NAME.fullmatch(name):
        raise CatalogueError(
            f"invalid application name {name!r}: use a DNS-1123 label of at most {APP_NAME_MAX} "
            f"characters (lowercase a-z, 0-9 and '-', starting with a letter, not ending "
            f"with '-'), e.g. {_suggest_name(name)!r}"
        )


def _suggest_name(name: str) -> str:
    suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    suggestion = suggestion.lstrip("0123456789-") or "app"
    return suggestion[:APP_NAME_MAX].rstrip("-")


def _check_label(value: str, what: str, max_len: int, hint: str) -> None:
    if len(value) > max_len or not _LABEL.fullmatch(value):
        raise CatalogueError(
            f"invalid {what} {value!r}: use a lowercase label of at most {max_len} characters "
            f"({hint})"
        )


def _choice(kind: type[_Choice], value: _Choice | str, what: str) -> _Choice:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise CatalogueError(f"unknown {what} {value!r}: use one of {known}") from None


def _user_list(users: list[str], what: str) -> list[str]:
    cleaned: list[str] = []
    for user in users:
        check_user(user, what)
        if user not in cleaned:
            cleaned.append(user)
    return cleaned


def _check_source(source: str) -> str:
    """A source git can fetch without running anything: see :mod:`schemas.sources`."""
    # Read through the module so a process's (or a test's) settings apply.
    roots = settings_module.get_settings().source_roots
    try:
        return check_source(source, roots)
    except SourceRefused as refused:
        raise CatalogueError(str(refused)) from None


def _check_cluster(cluster: str, settings: Settings) -> None:
    if cluster not in settings.clusters:
        known = ", ".join(sorted(settings.clusters)) or "none"
        raise CatalogueError(
            f"unknown cluster {cluster!r} (known: {known}); clusters are configured with "
            f"SLIPWAY_CLUSTERS"
        )


def _check_runtime(runtime: RuntimeKind | str, cluster: str, settings: Settings) -> RuntimeKind:
    try:
        kind = RuntimeKind(runtime)
    except ValueError:
        known = ", ".join(member.value for member in RuntimeKind)
        raise CatalogueError(f"unknown runtime {runtime!r}: use one of {known}") from None
    configured = settings.clusters[cluster].runtime
    if configured != kind:
        raise CatalogueError(f"cluster {cluster!r} runs {configured}, not {kind}: "
                             f"pick a {kind} cluster or --runtime {configured}")
    return kind


def _check_ports(ports: list[int]) -> list[int]:
    checked: list[int] = []
    for port in ports or DEFAULT_PORTS:
        if not 1 <= port <= 65535:
            raise CatalogueError(f"port must be between 1 and 65535, got {port}")
        if port in checked:
            raise CatalogueError(f"port {port} is given twice")
        checked.append(port)
    return checked


def _parse_env_vars(env_vars: list[str] | dict[str, str]) -> dict[str, str]:
    pairs = list(env_vars.items()) if isinstance(env_vars, dict) else [
        _split_env_var(item) for item in env_vars
    ]
    result: dict[str, str] = {}
    for key, value in pairs:
        if not _ENV_KEY.fullmatch(key):
            raise CatalogueError(
                f"invalid env var name {key!r}: use letters, digits and '_', not starting "
                f"with a digit (--env KEY=VALUE)"
            )
        if key in result:
            raise CatalogueError(f"env var {key} is given twice")
        result[key] = value
    return result


def _split_env_var(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise CatalogueError(f"env var {item!r} has no '=': write it as --env KEY=VALUE")
    return key, value
