"""Holds on automatic releases (issue #29): after a manual rollback (`slipway rollback`) an
environment takes no release started by a hook or a train until a person resumes them
(`slipway env resume-auto APP ENV`). Releases a person starts, and rollbacks, still run."""

from __future__ import annotations

from sqlmodel import Session

from catalogue.store import CatalogueError, Store, as_utc, audit, find_app, find_env
from catalogue.tables import Application, Environment, Release, utcnow
from schemas.models import ReleaseRequest


def automatic(request: ReleaseRequest) -> str:
    """What started the release when no person did ("" for a person): a hook or a train.
    A train's own rollback members are rollbacks, never held."""
    if request.is_rollback:
        return ""
    if request.trigger == "hook":
        return "a hook"
    if request.train_id is not None:
        return "a train's release"
    return ""


def hold_text(env: Environment) -> str:
    """One line for `slipway status`; "" when automatic releases are not held."""
    if not env.auto_hold:
        return ""
    since = f" since {as_utc(env.auto_hold_at):%Y-%m-%d %H:%M} UTC" if env.auto_hold_at else ""
    return f"automatic releases held{since}: {env.auto_hold}"


def held_refusal(app: str, env: Environment, what: str) -> str:
    return (f"{app} {env.name} holds automatic releases ({what} is one): {env.auto_hold}. A "
            f"person resumes them with `slipway env resume-auto {app} {env.name}`, or "
            f"releases by hand with `slipway release {app} {env.name} …`")


def check_not_held(app: Application, env: Environment, request: ReleaseRequest) -> None:
    what = automatic(request)
    if what and env.auto_hold:
        raise CatalogueError(held_refusal(app.name, env, what))


def hold_after_rollback(session: Session, app: Application, env: Environment,
                        release: Release) -> None:
    """A person's rollback holds automatic releases of the environment (in the release's
    own transaction, so a retried prepare holds once)."""
    env.auto_hold = (f"rolled back by {release.requested_by or 'a person'} (release "
                     f"{release.id}, v{release.from_version} → v{release.to_version})")
    env.auto_hold_by = release.requested_by
    env.auto_hold_at = utcnow()
    session.add(env)
    audit(session, "env.auto_held", actor=release.requested_by, app=app.name, env=env.name,
          release_id=release.id)


def resume_auto(store: Store, app: str, env: str, actor: str, reason: str = "") -> str:
    """Lift the hold (audited); the hold lifted, or CatalogueError when there is none."""
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        if not found.auto_hold:
            raise CatalogueError(f"{app} {found.name} does not hold automatic releases")
        lifted = found.auto_hold
        audit(session, "env.auto_resumed", actor=actor, app=owner.name, env=found.name,
              hold=lifted, **({"reason": reason} if reason else {}))
        found.auto_hold, found.auto_hold_by, found.auto_hold_at = "", "", None
        session.add(found)
        session.commit()
        return lifted


def hold_of(store: Store, app: str, env: str) -> str:
    with store.session() as session:
        return hold_text(find_env(session, find_app(session, app), env))
