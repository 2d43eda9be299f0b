"""Build records (镜像构建) for the CLI: list, show, and delete together with the image.

Deleting a build deletes its manifest from the registry first (credential resolved by name
from settings), then the record, so a failed registry call leaves the record to retry with.
A build that a baseline still references is never deleted: it is what a rollback runs.
With ``SLIPWAY_REGISTRY_KIND=harbor`` the artifact is deleted through Harbor's API (by digest
when the build recorded one, else by its tag), so Harbor removes its tags with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import col, or_, select

from catalogue.store import CatalogueError, Store, audit, find_app
from catalogue.tables import Application, Baseline, Build, Environment
from integrations.registry.client import RegistryClient, RegistryError, is_digest, split_image_ref
from integrations.registry.harbor import (
    HarborClient,
    RegistrySettings,
    split_harbor_repository,
)
from schemas.settings import Settings

RegistryFactory = Callable[[str, str, str], RegistryClient]
HarborFactory = Callable[[str, str, str], HarborClient]


def default_registry(base_url: str, username: str, password: str) -> RegistryClient:
    return RegistryClient(base_url, username, password)


def default_harbor(base_url: str, username: str, password: str) -> HarborClient:
    return HarborClient(base_url, username, password)


@dataclass
class BuildView:
    build: Build
    app: str
    # "env vN" of every baseline that runs this build's image.
    baselines: list[str]


def list_builds(store: Store, app: str) -> list[Build]:
    with store.session() as session:
        application = find_app(session, app)
        return list(session.exec(select(Build).where(Build.app_id == application.id)
                                 .order_by(col(Build.id).desc())).all())


def _referencing(build: Build, store: Store) -> list[str]:
    """Baselines that run this build: same digest when it has one, else the same reference."""
    match = Baseline.digest == build.digest if build.digest else Baseline.image == build.image
    with store.session() as session:
        rows = session.exec(select(Baseline, Environment)
                            .where(Baseline.env_id == Environment.id)
                            .where(or_(match, Baseline.image == build.image))).all()
    return [f"{env.name} v{baseline.version}" for baseline, env in rows]


def show_build(store: Store, build_id: int) -> BuildView:
    with store.session() as session:
        build = session.get(Build, build_id)
        if build is None:
            raise CatalogueError(f"unknown build {build_id}: see `slipway build list APP`")
        app = session.get(Application, build.app_id)
    return BuildView(build, app.name if app else "?", _referencing(build, store))


def delete_build(store: Store, settings: Settings, build_id: int, actor: str = "",
                 registry: RegistryFactory = default_registry,
                 harbor: HarborFactory = default_harbor,
                 registry_kind: str | None = None) -> str:
    """Delete the build's image from the registry, then its record; returns what was done.

    ``registry_kind`` defaults to ``SLIPWAY_REGISTRY_KIND`` (distribution or harbor).
    """
    view = show_build(store, build_id)
    build = view.build
    if view.baselines:
        raise CatalogueError(f"build {build_id} ({build.image}) is still referenced by baseline "
                             f"{', '.join(view.baselines)}; a rollback may need it")
    host, repository, reference = split_image_ref(build.image)
    done = "record deleted"
    if settings.registry and host == settings.registry:
        username, _, password = settings.credential(settings.registry_credential).partition(":")
        scheme = "http" if settings.registry_insecure else "https"
        kind = registry_kind or RegistrySettings().registry_kind
        try:
            if kind == "harbor":
                digest = build.digest if is_digest(build.digest) else reference
                project, inner = split_harbor_repository(repository)
                with harbor(f"{scheme}://{host}", username, password) as hub:
                    gone = hub.delete_artifact(project, inner, digest)
            else:
                with registry(f"{scheme}://{host}", username, password) as client:
                    digest = build.digest if is_digest(build.digest) else client.resolve(
                        repository, reference)
                    gone = client.delete(repository, digest)
        except (RegistryError, ValueError) as error:
            raise CatalogueError(f"build {build_id} not deleted: {error}") from error
        image = f"{repository}{'@' if is_digest(digest) else ':'}{digest}"
        done = (f"deleted {image} from {host}" if gone else
                f"{image} was already gone from {host}") + "; record deleted"
    else:
        # Engine-local builds (no registry configured, or another registry) have nothing
        # Slipway may delete remotely.
        done = f"{build.image} is not in the configured registry; record deleted"
    with store.session() as session:
        row = session.get(Build, build_id)
        if row is not None:
            session.delete(row)
        audit(session, "build.delete", actor=actor, app=view.app, build=build_id,
              image=build.image, digest=build.digest)
        session.commit()
    return done
