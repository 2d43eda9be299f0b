"""Upgrading a catalogue that already holds releases: every migration applies in place, with
SQLite's foreign keys on, and keeps what was there."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from catalogue.rejections import RejectedVersion
from catalogue.scopes import outside_scope
from catalogue.store import MIGRATIONS_DIR, Store
from catalogue.tables import Application, Environment, Release
from catalogue.tokens import ApiToken


def upgrade_to(store: Store, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_an_older_catalogue_with_releases_upgrades_to_head(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to(store, "0003")
    now = "2026-11-01 10:00:00"
    with store.engine.begin() as db:
        db.execute(text("INSERT INTO application (id, name, state, category, tier, owners, "
                        "approvers, source, description, created_at) VALUES (1, 'shop', "
                        "'online', 'in-house', 'core', '[]', '[]', '', '', :now)"), {"now": now})
        db.execute(text("INSERT INTO environment (id, app_id, env_type, cluster, replicas, cpu, "
                        "memory, ports, env_vars, runtime, namespace, strategy, health_path, "
                        "lb_port, created_at) VALUES (1, 1, 'prod', 'local', 2, '', '', "
                        "'[8080]', '{}', 'docker', 'default', 'gray', '/healthz', 18080, :now)"),
                   {"now": now})
        for number, rollback_to in ((1, None), (2, None), (3, 1)):
            db.execute(text(
                "INSERT INTO release (id, app_id, env_id, workflow_id, run_id, state, "
                "from_version, to_version, image, requested_by, error, started_at, rollback_to) "
                "VALUES (:n, 1, 1, 'w', :run, 'succeeded', :f, :n, 'reg/shop', 'ann', '', :now, "
                ":to)"),
                {"n": number, "run": f"r{number}", "f": number - 1, "to": rollback_to,
                 "now": now})
            db.execute(text(
                "INSERT INTO baseline (env_id, version, image, digest, replicas, cpu, memory, "
                "config_version, release_id, created_at) VALUES (1, :n, 'reg/shop', '', 2, '', "
                "'', '', :n, :now)"), {"n": number, "now": now})

    store.migrate()  # what every Slipway process does first

    with store.engine.connect() as db:
        rows = db.execute(text('SELECT id, rollback FROM "release" ORDER BY id')).all()
        baselines = db.execute(text("SELECT count(*) FROM baseline")).scalar_one()
        lanes = db.execute(text("SELECT count(*) FROM lane")).scalar_one()
    # Releases recorded before 0005 were rollbacks exactly when they named a target.
    assert [(row[0], bool(row[1])) for row in rows] == [(1, False), (2, False), (3, True)]
    assert baselines == 3 and lanes == 0


def test_0006_keeps_one_build_per_workflow_and_label_and_gives_old_tokens_their_roles(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to(store, "0005")
    now = "2026-11-01 10:00:00"
    with store.engine.begin() as db:
        db.execute(text("INSERT INTO application (id, name, state, category, tier, owners, "
                        "approvers, source, description, created_at) VALUES (1, 'shop', "
                        "'online', 'in-house', 'core', '[]', '[]', '', '', :now)"), {"now": now})
        # Two overlapping record_build retries of one release, and two manual builds.
        for workflow_id in ("release:shop:prod@local", "release:shop:prod@local", "", ""):
            db.execute(text("INSERT INTO build (app_id, ref, version_label, note, image, digest, "
                            "workflow_id, created_at) VALUES (1, '', 'v1', '', 'reg/shop:v1', "
                            "'', :w, :now)"), {"w": workflow_id, "now": now})
        db.execute(text("INSERT INTO api_token (name, user, hash, created_at, revoked) VALUES "
                        "('lead', 'lead', 'abc', :now, 0)"), {"now": now})

    store.migrate()

    with store.engine.connect() as db:
        builds = db.execute(text("SELECT workflow_id FROM build ORDER BY id")).all()
        roles = db.execute(text("SELECT roles FROM api_token")).scalar_one()
    assert [row[0] for row in builds] == ["release:shop:prod@local", "", ""]
    assert roles == "read,release,approve"
    with store.engine.begin() as db, pytest.raises(IntegrityError):
        db.execute(text("INSERT INTO build (app_id, ref, version_label, note, image, digest, "
                        "workflow_id, created_at) VALUES (1, '', 'v1', '', 'reg/shop:v1', '', "
                        "'release:shop:prod@local', :now)"), {"now": now})


def downgrade_to(store: Store, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_0010_gives_applications_no_team_and_old_tokens_every_application(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to(store, "0009")
    now = "2026-12-01 10:00:00"
    with store.engine.begin() as db:
        db.execute(text("INSERT INTO application (id, name, state, category, tier, owners, "
                        "approvers, source, description, created_at) VALUES (1, 'shop', "
                        "'online', 'in-house', 'core', '[\"ann\"]', '[\"lead\"]', '', '', "
                        ":now)"), {"now": now})
        db.execute(text("INSERT INTO environment (id, app_id, env_type, cluster, replicas, cpu, "
                        "memory, ports, env_vars, runtime, namespace, strategy, health_path, "
                        "lb_port, created_at, gray_steps, stable_seconds, batch_size, approval, "
                        "approval_timeout_seconds, analysis) VALUES (1, 1, 'prod', 'local', 2, "
                        "'', '', '[8080]', '{}', 'docker', 'default', 'gray', '/healthz', "
                        "18080, :now, '[\"1\"]', 60, 1, 'auto', 86400, '{}')"), {"now": now})
        db.execute(text("INSERT INTO api_token (name, user, hash, created_at, revoked, roles) "
                        "VALUES ('lead', 'lead', :hash, :now, 0, 'read,approve')"),
                   {"hash": "ab" * 32, "now": now})

    store.migrate()  # 0010 adds the columns in place, with the environment referencing shop

    with store.session() as session:
        app = session.exec(select(Application)).one()
        token = session.exec(select(ApiToken)).one()
    assert (app.name, app.team, app.owners) == ("shop", "", ["ann"])
    assert (token.apps, token.teams, token.roles) == ("", "", "read,approve")
    assert token.scope().everything  # as before: every application
    assert outside_scope(store, token.scope(), ["shop"]) == []

    # Down and up again keeps the rows (no table copy that would trip the foreign keys).
    downgrade_to(store, "0009")
    with store.engine.connect() as db:
        columns = {row[1] for row in db.execute(text("PRAGMA table_info(api_token)")).all()}
        assert "apps" not in columns and "teams" not in columns
        assert db.execute(text("SELECT count(*) FROM environment")).scalar_one() == 1
    upgrade_to(store, "0010")
    with store.engine.connect() as db:
        assert db.execute(text("SELECT team FROM application")).scalar_one() == ""


def test_0011_keeps_releases_and_environments_unheld_and_rejects_nothing(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to(store, "0010")
    now = "2026-12-09 10:00:00"
    with store.engine.begin() as db:
        db.execute(text("INSERT INTO application (id, name, state, category, tier, owners, "
                        "approvers, source, description, created_at, team) VALUES (1, 'shop', "
                        "'online', 'in-house', 'core', '[]', '[]', '', '', :now, '')"),
                   {"now": now})
        db.execute(text("INSERT INTO environment (id, app_id, env_type, cluster, replicas, cpu, "
                        "memory, ports, env_vars, runtime, namespace, strategy, health_path, "
                        "lb_port, created_at, gray_steps, stable_seconds, batch_size, approval, "
                        "approval_timeout_seconds, analysis) VALUES (1, 1, 'prod', 'local', 2, "
                        "'', '', '[8080]', '{}', 'docker', 'default', 'gray', '/healthz', "
                        "18080, :now, '[\"1\"]', 60, 1, 'auto', 86400, '{}')"), {"now": now})
        db.execute(text(
            "INSERT INTO release (id, app_id, env_id, workflow_id, run_id, state, from_version, "
            "to_version, image, requested_by, error, started_at, rollback, break_glass) VALUES "
            "(1, 1, 1, 'w', 'r1', 'rolled_back', 0, 1, 'reg/shop:1', 'ann', 'unhealthy', :now, "
            "0, '')"), {"now": now})

    store.migrate()  # 0011 adds columns in place, with releases referencing the environment

    with store.session() as session:
        env = session.exec(select(Environment)).one()
        release = session.exec(select(Release)).one()
        assert session.exec(select(RejectedVersion)).all() == []
    assert (env.auto_hold, env.auto_hold_by, env.auto_hold_at) == ("", "", None)
    assert (release.digest, release.image_checked, release.allow_rejected) == ("", False, "")

    downgrade_to(store, "0010")
    with store.engine.connect() as db:
        columns = {row[1] for row in db.execute(text("PRAGMA table_info(release)")).all()}
        assert "digest" not in columns and "image_checked" not in columns
        assert db.execute(text("SELECT count(*) FROM release")).scalar_one() == 1
    upgrade_to(store, "0011")
    with store.engine.connect() as db:
        assert db.execute(text("SELECT count(*) FROM rejected_version")).scalar_one() == 0
