"""An environment's end: removed environments, marked without a schema change.

A removed environment keeps its row, so its releases, baselines, builds and audit events stay
readable; what marks it is ``replicas == 0`` (:data:`REMOVED_REPLICAS`), a value no live
environment can have (replicas are 1–24) and that says what is true of it: nothing runs.
Nothing is released into it again (``check_active``); its load-balancer port stays taken,
so an old address never reaches another application.
"""

from __future__ import annotations

from sqlmodel import Session, select

from catalogue.releases import env_key
from catalogue.store import CatalogueError, Store, audit, find_app, find_env
from catalogue.tables import AuditEvent, Environment
from schemas.teardown import EnvRemovedInput, TeardownPlan

REMOVED_REPLICAS = 0
REMOVED = "env.removed"


def is_removed(env: Environment) -> bool:
    return env.replicas == REMOVED_REPLICAS


def check_active(app: str, env: Environment) -> None:
    """Refuse anything that would run in a removed environment, saying what is left of it."""
    if is_removed(env):
        raise CatalogueError(
            f"environment {env.name} of {app} was removed (`slipway env remove`): nothing is "
            f"released into it again; its history stays readable with `slipway release "
            f"history {app} {env.name}` and `slipway env show {app} {env.name}`")


def removal_event(session: Session, app: str, env: str) -> AuditEvent | None:
    """The audit event that recorded the environment's removal, if it was removed."""
    return session.exec(select(AuditEvent).where(
        AuditEvent.action == REMOVED, AuditEvent.app == app, AuditEvent.env == env)
        .order_by(AuditEvent.id.desc())).first()  # type: ignore[union-attr]


def teardown_plan(store: Store, app: str, env: str,
                  drain_timeout_seconds: float = 30.0) -> TeardownPlan:
    """What a teardown of ``app``'s ``env`` acts on (CatalogueError when unknown)."""
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        return TeardownPlan(
            app=owner.name, env=found.name,
            env_key=env_key(owner.name, found.env_type, found.cluster), cluster=found.cluster,
            namespace=found.namespace, lb_port=found.lb_port, health_path=found.health_path,
            ports=found.ports, drain_timeout_seconds=drain_timeout_seconds,
            already_removed=is_removed(found))


def mark_removed(store: Store, data: EnvRemovedInput) -> bool:
    """Mark the environment removed and audit ``env.removed``; True when this call did it.
    Idempotent: an environment already marked is left as it is, with no second event."""
    with store.session() as session:
        owner = find_app(session, data.app)
        found = find_env(session, owner, data.env)
        if is_removed(found):
            return False
        previous = found.replicas
        found.replicas = REMOVED_REPLICAS
        session.add(found)
        audit(session, REMOVED, actor=data.requested_by, app=owner.name, env=found.name,
              reason=data.reason, workflow_id=data.workflow_id, versions=data.versions,
              replicas=previous, lb_port=found.lb_port)
        session.commit()
        return True
