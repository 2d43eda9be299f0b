"""The catalogue store: SQLite by default, PostgreSQL via ``SLIPWAY_DATABASE_URL``.

Holds applications, environments, builds, changes, releases, baselines and audit events.
The schema is created and upgraded by the alembic migrations in ``catalogue/migrations/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import Session, col, create_engine, select

from catalogue.tables import Application, AuditEvent, Baseline, Environment

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class CatalogueError(Exception):
    """A request the catalogue cannot satisfy; the message tells a person what to do."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # The worker and the CLI share the file: WAL + a busy timeout keep them from tripping.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Sessions over the catalogue plus the look-ups every caller needs."""

    @staticmethod
    def assume_migrated(url: str) -> None:
        """Trust that ``url``'s schema is current in this process: a command process of the
        server, whose database the server migrated when it started."""
        _MIGRATED_URLS.add(url)

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._migrated = False

    def migrate(self) -> None:
        """Bring the schema to the newest alembic revision (idempotent)."""
        if self._migrated or self.url in _MIGRATED_URLS:
            return
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        self._migrated = True
        _MIGRATED_URLS.add(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.migrate()
        with Session(self.engine, expire_on_commit=False) as session:
            yield session


# Databases this process has brought to the newest revision (or been told are there).
_MIGRATED_URLS: set[str] = set()


def find_app(session: Session, name: str) -> Application:
    app = session.exec(select(Application).where(Application.name == name)).first()
    if app is None:
        raise CatalogueError(
            f"unknown application {name!r}: register it with `slipway app register {name}`"
        )
    return app


def find_env(session: Session, app: Application, env: str) -> Environment:
    """Find ``type@cluster`` (or just ``type`` when only one cluster has it) of ``app``."""
    env_type, _, cluster = env.partition("@")
    query = select(Environment).where(
        Environment.app_id == app.id, Environment.env_type == env_type
    )
    if cluster:
        query = query.where(Environment.cluster == cluster)
    matches = list(session.exec(query).all())
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(e.name for e in _envs_of(session, app)) or "none"
    if not matches:
        raise CatalogueError(
            f"application {app.name!r} has no environment {env!r} (known: {known}); "
            f"add it with `slipway env add {app.name} {env_type} --cluster CLUSTER`"
        )
    raise CatalogueError(f"{env!r} is ambiguous for {app.name!r}: name one of {known}")


def _envs_of(session: Session, app: Application) -> list[Environment]:
    return list(session.exec(select(Environment).where(Environment.app_id == app.id)).all())


def latest_baseline(session: Session, env_id: int) -> Baseline | None:
    return session.exec(
        select(Baseline).where(Baseline.env_id == env_id).order_by(col(Baseline.version).desc())
    ).first()


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; the catalogue writes them in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit(session: Session, action: str, *, actor: str = "", app: str = "", env: str = "",
          **detail: Any) -> None:
    """Record an audit event in the caller's transaction (commits with it)."""
    session.add(AuditEvent(actor=actor, action=action, app=app, env=env, detail=detail))
