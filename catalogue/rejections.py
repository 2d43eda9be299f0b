"""Rejected versions (issue #29): a release rolled back (by analysis, health or a person's
abort) rejects its target image for its application, so the same bad image does not come
back by a later release, a hook or a lane push, unless a person releases it with
``--allow-rejected REASON``.

A version is keyed by its digest (or its image reference when no digest is known). The
release row remembers the target once it was checked here (``image_checked``): at prepare
when the target is known (a rollback's baseline), else when the build is recorded or the
image resolved. ``finish_release`` rejects a rolled-back release's checked target; a refused
target was never checked, so a refusal rejects nothing new.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, select

from catalogue.store import CatalogueError, Store, audit, find_app
from catalogue.tables import Application, Baseline, Build, Environment, Release, utcnow
from schemas.models import ImageSpec, ReleaseRequest


class RejectedVersion(SQLModel, table=True):
    """An image (digest, or reference without one) an application must not run again."""

    __tablename__ = "rejected_version"
    __table_args__ = (UniqueConstraint("app_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="application.id", index=True)
    # The digest, or the image reference when no digest is known.
    key: str
    image: str = ""
    digest: str = ""
    # The release that rejected it (no foreign key: the history outlives removed rows).
    release_id: int | None = None
    env: str = ""
    reason: str = ""
    rejected_at: datetime = Field(default_factory=utcnow)


def version_key(image: str, digest: str = "") -> str:
    """The digest; for a reference pinned by digest (``repo@sha256:…``) that digest; else
    the reference itself."""
    if digest:
        return digest
    return image.rsplit("@", 1)[1] if "@" in image else image


def find_rejection(session: Session, app_id: int, image: str,
                   digest: str = "") -> RejectedVersion | None:
    """The rejection that matches the image: by digest, or by reference for versions
    rejected without a digest."""
    keys = {version_key(image, digest)}
    if image:
        keys.add(image)
    return session.exec(select(RejectedVersion).where(
        RejectedVersion.app_id == app_id, col(RejectedVersion.key).in_(sorted(keys)))).first()


def describe(row: RejectedVersion, app: str) -> str:
    when = f"{row.rejected_at:%Y-%m-%d %H:%M} UTC"
    by = f"release {row.release_id}" if row.release_id else "a person"
    where = f" on {row.env}" if row.env else ""
    return (f"{row.key} of {app} was rejected by {by}{where} at {when}: "
            f"{row.reason or 'rolled back'}")


def refusal(row: RejectedVersion, app: str) -> str:
    return (f"{describe(row, app)}. A person may release it anyway with `slipway release "
            f"{app} ENV --image REF --allow-rejected \"REASON\"`, or clear it with `slipway "
            f"rejected clear {app} {row.key} --reason \"…\"`")


def check_not_rejected(session: Session, app: Application, image: ImageSpec, *,
                       allow: str = "", actor: str = "", release_id: int | None = None) -> None:
    """Refuse a rejected image (CatalogueError with which release rejected it, when, why),
    unless a person allows it (``allow``: their reason, audited)."""
    row = find_rejection(session, app.id or 0, image.image, image.digest)
    if row is None:
        return
    if not allow.strip():
        raise CatalogueError(refusal(row, app.name))
    audit(session, "rejected.allowed", actor=actor, app=app.name, key=row.key,
          image=image.image, release_id=release_id, rejected_by_release=row.release_id,
          reason=allow)


def check_ref_not_rejected(session: Session, app: Application, ref: str | None,
                           allow: str = "") -> None:
    """Refuse a git ref an earlier build turned into a rejected image (a hook pushing the
    same commit or tag again), before anything is built."""
    if not ref or allow.strip():
        return
    builds = session.exec(select(Build).where(Build.app_id == app.id, Build.ref == ref)).all()
    for build in builds:
        row = find_rejection(session, app.id or 0, build.image, build.digest)
        if row is not None:
            raise CatalogueError(f"{ref} was built as {build.image}: {refusal(row, app.name)}")


def check_request(session: Session, app: Application, env: Environment,
                  request: ReleaseRequest) -> None:
    """Refuse, before anything starts, a request whose target is known to be rejected: a
    baseline to roll back to, an image, or a ref built before into a rejected image."""
    if request.allow_rejected and not request.allow_rejected.strip():
        raise CatalogueError("--allow-rejected needs a reason: --allow-rejected \"why it may "
                             "come back\"")
    if request.rollback_to is not None:
        baseline = session.exec(select(Baseline).where(
            Baseline.env_id == env.id, Baseline.version == request.rollback_to)).first()
        if baseline is not None:
            check_not_rejected(session, app, ImageSpec(image=baseline.image,
                                                       digest=baseline.digest),
                               allow=request.allow_rejected)
    elif request.image:
        check_not_rejected(session, app, ImageSpec(image=request.image),
                           allow=request.allow_rejected)
    else:
        check_ref_not_rejected(session, app, request.ref, request.allow_rejected)


def admit_image(store: Store, app: str, image: ImageSpec, run_id: str) -> None:
    """The image a release (run ``run_id``) or a lane push is about to run, once built or
    resolved: refuse it when rejected (unless its release allows it); otherwise record it as
    the release's checked target. Idempotent."""
    with store.session() as session:
        release = session.exec(select(Release).where(Release.run_id == run_id)).first()
        if release is None and not app:
            return  # no release and no application: nothing to check against
        owner = (session.get(Application, release.app_id) if release is not None
                 else find_app(session, app))
        assert owner is not None
        if release is not None and release.image_checked:
            return
        check_not_rejected(session, owner, image,
                           allow=release.allow_rejected if release is not None else "",
                           actor=release.requested_by if release is not None else "",
                           release_id=release.id if release is not None else None)
        if release is not None:
            note_target(release, image)
            session.add(release)
        session.commit()


def note_target(release: Release, image: ImageSpec) -> None:
    release.image, release.digest, release.image_checked = image.image, image.digest, True


def reject_target(session: Session, app: Application, env: Environment,
                  release: Release) -> None:
    """A rolled-back release rejects the target it checked (once: a later rollback of the
    same version, allowed again by a person, keeps the first rejection)."""
    if not release.image_checked or not (release.digest or release.image):
        return
    key = version_key(release.image, release.digest)
    if session.exec(select(RejectedVersion).where(RejectedVersion.app_id == app.id,
                                                  RejectedVersion.key == key)).first():
        return
    session.add(RejectedVersion(app_id=app.id or 0, key=key, image=release.image,
                                digest=release.digest, release_id=release.id, env=env.name,
                                reason=release.error))
    audit(session, "version.rejected", app=app.name, env=env.name, key=key,
          image=release.image, release_id=release.id, reason=release.error)


def list_rejected(store: Store, app: str) -> list[RejectedVersion]:
    with store.session() as session:
        owner = find_app(session, app)
        return list(session.exec(select(RejectedVersion).where(
            RejectedVersion.app_id == owner.id).order_by(col(RejectedVersion.rejected_at)
                                                         .desc())).all())


def clear_rejected(store: Store, app: str, key: str, reason: str, actor: str) -> RejectedVersion:
    """Lift a rejection (audited with the reason): the version may be released again."""
    if not reason.strip():
        raise CatalogueError("say why the version may come back: --reason \"…\"")
    with store.session() as session:
        owner = find_app(session, app)
        row = find_rejection(session, owner.id or 0, key)
        if row is None:
            raise CatalogueError(f"{key} is not a rejected version of {app}: see `slipway "
                                 f"rejected list {app}`")
        session.delete(row)
        audit(session, "rejected.cleared", actor=actor, app=owner.name, key=row.key,
              image=row.image, rejected_by_release=row.release_id, reason=reason)
        session.commit()
        return row
