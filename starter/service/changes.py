"""Changes (变更单), release history, baselines and rollbacks: the services behind
``slipway change …``, ``slipway baseline …``, ``slipway release history`` / ``--change`` and
``slipway rollback``.

Like :mod:`starter.service.catalogue`, every write validates the whole request first (a refused
request leaves no row and no audit event) and records an audit event in the same
transaction. Building a :class:`ReleaseRequest` writes nothing: the workflow records the
release when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from catalogue.environments import check_active
from catalogue.releases import check_releasable
from catalogue.store import CatalogueError, Store, audit, find_app, find_env, latest_baseline
from catalogue.tables import (
    Application,
    AuditEvent,
    Baseline,
    Change,
    Environment,
    Release,
)
from schemas.enums import AppState, ChangeKind, ChangeState, ReleaseState
from schemas.images import check_image_ref
from schemas.models import ReleaseRequest
from schemas.sources import check_ref
from starter.service.validation import check_cpu, check_memory, check_replicas

# A release that ended in these states never ran: its change went back to developing and may
# be submitted and released again. Any other release counts as the change's one release.
RELEASE_AGAIN_AFTER = {ReleaseState.REJECTED, ReleaseState.APPROVAL_EXPIRED}

# What `baseline diff` compares, in display order.
BASELINE_FIELDS = ("image", "digest", "replicas", "cpu", "memory", "config_version")


@dataclass(frozen=True)
class ChangeView:
    """A change with the names a person reads and the release that carried it out, if any."""

    change: Change
    app: str
    env: str
    release: Release | None


@dataclass(frozen=True)
class HistoryRow:
    """One release of an environment and the baseline it wrote (None unless it succeeded)."""

    release: Release
    baseline_version: int | None


# ---------------------------------------------------------------- changes


def create_change(store: Store, app: str, env: str, *, kind: ChangeKind | str,
                  image: str | None = None, ref: str | None = None, replicas: int | None = None,
                  cpu: str | None = None, memory: str | None = None, note: str = "",
                  actor: str) -> ChangeView:
    """Record a new change in state developing.

    code: a new image (``image``), a git ref to build (``ref``), or the app's source as is;
    scale: ``replicas`` (1–24); resources: ``cpu`` and/or ``memory``, checked like ``env add``.
    A change carries only the fields of its kind, so what it will do is never ambiguous.
    """
    try:
        kind = ChangeKind(kind)
    except ValueError:
        known = ", ".join(member.value for member in ChangeKind)
        raise CatalogueError(f"unknown change kind {kind!r}: use one of {known}") from None
    given = {"--image": image, "--ref": ref, "--replicas": replicas, "--cpu": cpu,
             "--memory": memory}
    allowed = {ChangeKind.CODE: ("--image", "--ref"), ChangeKind.SCALE: ("--replicas",),
               ChangeKind.RESOURCES: ("--cpu", "--memory")}[kind]
    stray = [flag for flag, value in given.items() if value not in (None, "")
             and flag not in allowed]
    if stray:
        raise CatalogueError(f"a {kind} change takes only {' / '.join(allowed)}, "
                             f"not {', '.join(stray)}")
    try:
        if ref:
            check_ref(ref)
        if image:
            check_image_ref(image)
    except ValueError as refused:
        raise CatalogueError(str(refused)) from None
    if kind == ChangeKind.CODE and image and ref:
        raise CatalogueError("a code change names either --image (an existing image) or --ref "
                             "(a git ref to build), not both")
    if kind == ChangeKind.SCALE:
        if replicas is None:
            raise CatalogueError("a scale change needs --replicas N (1 to 24)")
        check_replicas(replicas)
    if kind == ChangeKind.RESOURCES:
        if not cpu and not memory:
            raise CatalogueError("a resources change needs --cpu and/or --memory")
        check_cpu(cpu or "")
        check_memory(memory or "")
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        if owner.state == AppState.OFFLINE:
            raise CatalogueError(f"application {app!r} is offline: it takes no new changes")
        check_active(owner.name, found)
        if kind == ChangeKind.CODE and not image and not ref and not owner.source:
            raise CatalogueError(f"application {app!r} has no build source: give the change "
                                 "--image REF, or register the app with --source DIR")
        change = Change(app_id=owner.id or 0, env_id=found.id or 0, kind=kind,
                        image=image or "", ref=ref or "", replicas=replicas,
                        cpu=cpu or "", memory=memory or "", note=note.strip(),
                        requested_by=actor)
        session.add(change)
        session.flush()  # assigns the id the audit event names
        audit(session, "change.created", actor=actor, app=owner.name, env=found.name,
              change_id=change.id, kind=str(kind), image=change.image, ref=change.ref,
              replicas=replicas, cpu=change.cpu, memory=change.memory)
        session.commit()
        return ChangeView(change, owner.name, found.name, None)


def list_changes(store: Store, app: str) -> list[ChangeView]:
    """Every change of an application, newest first."""
    with store.session() as session:
        owner = find_app(session, app)
        changes = session.exec(select(Change).where(Change.app_id == owner.id)
                               .order_by(col(Change.id).desc())).all()
        return [_view(session, change) for change in changes]


def show_change(store: Store, change_id: int) -> ChangeView:
    """One change with its application, environment and release."""
    with store.session() as session:
        return _view(session, _find_change(session, change_id))


def submit_change(store: Store, change_id: int, actor: str) -> ChangeView:
    """Development is done: developing → ready_to_release."""
    with store.session() as session:
        change = _find_change(session, change_id)
        if change.state != ChangeState.DEVELOPING:
            raise CatalogueError(f"change {change_id} is {change.state}, not "
                                 f"{ChangeState.DEVELOPING}: only a change in development "
                                 f"can be submitted")
        return _move(session, change, ChangeState.READY_TO_RELEASE, "change.submitted", actor)


def close_change(store: Store, change_id: int, actor: str) -> ChangeView:
    """Abandon a change that was never released: developing / ready_to_release → closed."""
    with store.session() as session:
        change = _find_change(session, change_id)
        if change.state == ChangeState.CLOSED:
            raise CatalogueError(f"change {change_id} is already closed")
        if change.state not in (ChangeState.DEVELOPING, ChangeState.READY_TO_RELEASE):
            raise CatalogueError(f"change {change_id} is {change.state}: a released change is "
                                 f"kept as an archive and cannot be closed")
        return _move(session, change, ChangeState.CLOSED, "change.closed", actor)


def change_release_request(store: Store, change_id: int, actor: str) -> ReleaseRequest:
    """The release request that carries out a change ready to release (at most once)."""
    with store.session() as session:
        change = _find_change(session, change_id)
        view = _view(session, change)
        if view.release is not None and view.release.state not in RELEASE_AGAIN_AFTER:
            raise CatalogueError(
                f"change {change_id} was already released by release {view.release.id} "
                f"(workflow {view.release.workflow_id}, {view.release.state}): a change is "
                f"released at most once; create a new change"
            )
        if change.state != ChangeState.READY_TO_RELEASE:
            hint = (f"submit it first with `slipway change submit {change_id}`"
                    if change.state == ChangeState.DEVELOPING else "create a new change")
            raise CatalogueError(f"change {change_id} is {change.state}, not "
                                 f"{ChangeState.READY_TO_RELEASE}: {hint}")
        check_releasable(_app(session, change.app_id))
        # A scale or resources change runs what runs now, with new numbers.
        current = latest_baseline(session, change.env_id)
        image = change.image or None
        if change.kind != ChangeKind.CODE:
            if current is None:
                raise CatalogueError(f"change {change_id} is a {change.kind} change, but "
                                     f"nothing runs in {view.env} yet: release code first")
            image = current.image
        return ReleaseRequest(
            app=view.app, env=view.env, image=image, ref=change.ref or None,
            requested_by=actor, change_id=change.id, replicas=change.replicas,
            cpu=change.cpu or None, memory=change.memory or None,
        )


# ---------------------------------------------------------------- history and baselines


def release_history(store: Store, app: str, env: str) -> list[HistoryRow]:
    """Every release of an environment, newest first, with the baseline each wrote."""
    with store.session() as session:
        found = find_env(session, find_app(session, app), env)
        releases = session.exec(select(Release).where(Release.env_id == found.id)
                                .order_by(col(Release.id).desc())).all()
        written = {b.release_id: b.version for b in _baselines(session, found)}
        return [HistoryRow(release, written.get(release.id)) for release in releases]


REFUSAL_ACTIONS = ("release.refused", "api.refused")


def refusals(store: Store, app: str, env: str) -> list[AuditEvent]:
    """Refused approvals, controls and API requests about an environment, newest first."""
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        events = session.exec(select(AuditEvent).where(
            AuditEvent.app == owner.name,
            col(AuditEvent.action).in_(REFUSAL_ACTIONS)).order_by(col(AuditEvent.id).desc())
        ).all()
    # The receiver records the environment as the caller wrote it (``prod``), the workflow
    # its canonical name (``prod@local``).
    names = {found.name, found.env_type}
    return [event for event in events if not event.env or event.env in names]


def list_baselines(store: Store, app: str, env: str) -> list[Baseline]:
    """Every baseline of an environment, newest first."""
    with store.session() as session:
        return _baselines(session, find_env(session, find_app(session, app), env))


def diff_baselines(store: Store, app: str, env: str, a: int | None = None,
                   b: int | None = None) -> list[tuple[str, str, str]]:
    """The fields that differ between baselines ``a`` and ``b`` as (field, in a, in b).

    Defaults (see :func:`diff_versions`): the one before the current against the current.
    """
    baselines = {baseline.version: baseline for baseline in list_baselines(store, app, env)}
    a, b = _diff_pair(sorted(baselines), a, b, f"{app} {env}")
    old, new = baselines[a], baselines[b]
    return [(name, _text(getattr(old, name)), _text(getattr(new, name)))
            for name in BASELINE_FIELDS if getattr(old, name) != getattr(new, name)]


def diff_versions(store: Store, app: str, env: str, a: int | None = None,
                  b: int | None = None) -> tuple[int, int]:
    """The two versions :func:`diff_baselines` compares: ``b`` defaults to the current
    baseline, ``a`` to the one before ``b``."""
    versions = sorted(baseline.version for baseline in list_baselines(store, app, env))
    return _diff_pair(versions, a, b, f"{app} {env}")


def rollback_request(store: Store, app: str, env: str, *, to: int | None = None,
                     image: str | None = None, actor: str,
                     gradual: bool = False) -> ReleaseRequest:
    """A release that puts an older baseline (default: the one before the current) back.

    It rolls forward as baseline N+1 running baseline N's image (by digest). With ``image``
    it releases that image instead (the fix-forward kind of rollback), recorded as a rollback
    of the current baseline all the same.
    """
    if to is not None and image:
        raise CatalogueError("pass either --to N (an older baseline) or --image REF, not both")
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        check_releasable(owner)
        check_active(owner.name, found)
        baselines = _baselines(session, found)
        if not baselines:
            raise CatalogueError(f"nothing has been released to {app} {found.name}: "
                                 "there is nothing to roll back")
        if image:
            return ReleaseRequest(app=owner.name, env=found.name, image=image,
                                  requested_by=actor, rollback=True, gradual=gradual)
        target = _rollback_target(baselines, to, f"{app} {found.name}")
        # The workflow takes image and digest from baseline N (rollback_to); the image here
        # only lets the request validate for applications without a build source.
        return ReleaseRequest(app=owner.name, env=found.name, image=target.image,
                              requested_by=actor, rollback_to=target.version,
                              gradual=gradual)


# ---------------------------------------------------------------- helpers


def _diff_pair(versions: list[int], a: int | None, b: int | None,
               where: str) -> tuple[int, int]:
    known = ", ".join(f"v{v}" for v in versions) or "none"
    for version in (a, b):
        if version is not None and version not in versions:
            raise CatalogueError(f"{where} has no baseline v{version} (known: {known})")
    b = versions[-1] if b is None and versions else b
    if a is None:
        older = [v for v in versions if b is not None and v < b]
        if not older:
            raise CatalogueError(f"{where} has no baseline older than "
                                 f"{f'v{b}' if b else 'the current'} to compare with "
                                 f"(known: {known}); name two versions: A B")
        a = older[-1]
    assert b is not None  # versions is not empty when a was found
    return a, b


def _rollback_target(baselines: list[Baseline], to: int | None, where: str) -> Baseline:
    current = baselines[0]
    if to is None:
        if len(baselines) < 2:
            raise CatalogueError(f"{where} has only baseline v{current.version}: there is no "
                                 f"older baseline to roll back to")
        return baselines[1]
    if to == current.version:
        raise CatalogueError(f"v{to} is the current baseline of {where}: roll back to an "
                             f"older one, e.g. --to {baselines[1].version}" if len(baselines) > 1
                             else f"v{to} is the current baseline of {where} and there is no "
                                  f"older one")
    for baseline in baselines:
        if baseline.version == to:
            return baseline
    known = ", ".join(f"v{b.version}" for b in reversed(baselines))
    raise CatalogueError(f"{where} has no baseline v{to} (known: {known})")


def _find_change(session: Session, change_id: int) -> Change:
    change = session.get(Change, change_id)
    if change is None:
        raise CatalogueError(f"change {change_id} does not exist; list changes with "
                             f"`slipway change list APP`")
    return change


def _app(session: Session, app_id: int) -> Application:
    app = session.get(Application, app_id)
    assert app is not None  # foreign key
    return app


def _view(session: Session, change: Change) -> ChangeView:
    env = session.get(Environment, change.env_id)
    assert env is not None  # foreign key
    release = session.exec(select(Release).where(Release.change_id == change.id)
                           .order_by(col(Release.id).desc())).first()
    return ChangeView(change, _app(session, change.app_id).name, env.name, release)


def _move(session: Session, change: Change, target: ChangeState, action: str,
          actor: str) -> ChangeView:
    previous = change.state
    change.state = target
    session.add(change)
    view = _view(session, change)
    audit(session, action, actor=actor, app=view.app, env=view.env, change_id=change.id,
          previous=str(previous))
    session.commit()
    return view


def _baselines(session: Session, env: Environment) -> list[Baseline]:
    return list(session.exec(select(Baseline).where(Baseline.env_id == env.id)
                             .order_by(col(Baseline.version).desc())).all())


def _text(value: object) -> str:
    return "" if value is None else str(value)
