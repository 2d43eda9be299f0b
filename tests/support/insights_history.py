"""A hand-made release history for the insights tests, and its figures worked out by hand.

Three applications (shop and cart of team retail, ledger of team finance), fourteen releases
over three weeks ending a few days ago, written straight into the catalogue's tables; shop's
changes carry git refs of a real repository whose commits are dated by hand. The comments say
which release counts for what; EXPECTED holds the figures ``slipway insights`` must print.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, Build, Change, Environment, Release
from schemas.enums import AppState, ReleaseState
from schemas.settings import Settings
from starter.api.app import create_app
from starter.api.settings import ReceiverSettings

H = timedelta(hours=1)
D = timedelta(days=1)
M = timedelta(minutes=1)


def _git_repo(path: Path, commits: dict[str, datetime]) -> None:
    """A repository at ``path`` with one commit per tag, committed at the given times."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for tag, when in commits.items():
        (path / "VERSION").write_text(tag)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S+0000")
        env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp,
               "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.test",
               "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.test"}
        for words in (["add", "VERSION"], ["commit", "-q", "-m", tag], ["tag", tag]):
            subprocess.run(["git", "-C", str(path), *words], check=True, env=env)


def write_history(store: Store, source_root: Path, now: datetime | None = None) -> datetime:
    """Write the history; returns T0, the first release's day (20 days before ``now``)."""
    now = now or datetime.now(UTC)
    t0 = (now - 20 * D).replace(microsecond=0)
    _git_repo(source_root / "shop-src", {"v1": t0 - 2 * H, "v2": t0 + D - H,
                                         "v3": t0 + 6 * D - 3 * H})
    with store.session() as session:
        apps = {name: Application(name=name, team=team, state=AppState.ONLINE, source=source)
                for name, team, source in (("shop", "retail", str(source_root / "shop-src")),
                                           ("cart", "retail", ""), ("ledger", "finance", ""))}
        session.add_all(apps.values())
        session.flush()
        envs = {}
        for port, (app, env_type) in enumerate((("shop", "prod"), ("shop", "test"),
                                                ("cart", "prod"), ("ledger", "prod"))):
            envs[app, env_type] = Environment(app_id=apps[app].id or 0, env_type=env_type,
                                              cluster="local", lb_port=19000 + port)
        session.add_all(envs.values())
        session.flush()
        release_no = 0

        def release(app: str, env_type: str, state: ReleaseState, started: datetime,
                    finished: datetime | None, *, created: datetime | None = None,
                    ref: str = "", note: str = "", rollback_to: int | None = None,
                    rollback: bool = False, error: str = "") -> Release:
            nonlocal release_no
            release_no += 1
            env = envs[app, env_type]
            change = None
            if created is not None:
                change = Change(app_id=apps[app].id or 0, env_id=env.id or 0, ref=ref,
                                note=note, created_at=created, requested_by="dev")
                session.add(change)
                session.flush()
            row = Release(app_id=apps[app].id or 0, env_id=env.id or 0,
                          change_id=change.id if change else None,
                          workflow_id=f"release:{app}:{env_type}@local",
                          run_id=f"run-{release_no}", state=state, to_version=release_no,
                          rollback_to=rollback_to, rollback=rollback or rollback_to is not None,
                          started_at=started, finished_at=finished, error=error,
                          requested_by="dev")
            session.add(row)
            session.flush()
            return row

        def asked(row: Release, at: datetime, approved: datetime | None = None) -> None:
            env = session.get(Environment, row.env_id)
            app = session.get(Application, row.app_id)
            assert env is not None and app is not None
            session.add(AuditEvent(at=at, action="release.awaiting_approval", app=app.name,
                                   env=env.name, detail={"release_id": row.id}))
            if approved is not None:
                session.add(AuditEvent(at=approved, action="release.approved", actor="lead",
                                       app=app.name, env=env.name,
                                       detail={"release_id": row.id}))

        S, F = ReleaseState.SUCCEEDED, ReleaseState.FAILED
        # Outside the window (40 days ago): counts for nothing.
        release("shop", "prod", S, now - 40 * D, now - 40 * D + H, created=now - 41 * D)
        # R1 shop prod: commit v1 at T0-2h → served at T0+2h45m: lead 4h45m; build 10 min;
        # approval waited 1h.
        r1 = release("shop", "prod", S, t0 + H, t0 + 2 * H + 45 * M, created=t0, ref="v1")
        session.add(Build(app_id=r1.app_id, version_label="v1", image="shop:v1",
                          workflow_id=r1.workflow_id, created_at=t0 + H + 10 * M))
        asked(r1, t0 + H + 15 * M, t0 + 2 * H + 15 * M)
        # R2 shop prod: commit v2 at T0+1d-1h → served T0+1d+1h: lead 2h; rolled back 2h
        # later by R3 (within 24h): failed change "rolled back later", restored when R3
        # finished (2h30m after R2 did).
        release("shop", "prod", S, t0 + D, t0 + D + H, created=t0 + D, ref="v2")
        release("shop", "prod", S, t0 + D + 3 * H, t0 + D + 3 * H + 30 * M, rollback_to=1)
        # R4 shop prod: rolled back by its own undo: failed change, restored by itself.
        release("shop", "prod", ReleaseState.ROLLED_BACK, t0 + 5 * D + H, t0 + 5 * D + 2 * H,
                created=t0 + 5 * D, error="analysis: error rate 7% > 5%")
        # R5 shop prod: commit v3 at T0+6d-3h → served T0+6d+1h: lead 4h.
        release("shop", "prod", S, t0 + 6 * D, t0 + 6 * D + H, created=t0 + 6 * D, ref="v3")
        # R13 shop test: lead 1h30m (from the change: no ref).
        release("shop", "test", S, t0 + 4 * D + H, t0 + 4 * D + 90 * M, created=t0 + 4 * D)
        # R6 cart prod: no source to ask git: lead from the change, 3h.
        release("cart", "prod", S, t0 + 2 * D + 2 * H, t0 + 2 * D + 3 * H, created=t0 + 2 * D)
        # R7 cart prod: failed (the undo failed too): restored when the hotfix R8 finished,
        # 3h30m later; R8's lead from its change: 3h.
        release("cart", "prod", F, t0 + 3 * D, t0 + 3 * D + 30 * M, created=t0 + 3 * D,
                error="undo failed: v1 did not come back")
        release("cart", "prod", S, t0 + 3 * D + 2 * H, t0 + 3 * D + 4 * H,
                created=t0 + 3 * D + H, ref="hotfix/login")
        # R9 ledger prod: rejected after a 4h approval wait: not an attempt.
        r9 = release("ledger", "prod", ReleaseState.REJECTED, t0 + 10 * D + H,
                     t0 + 10 * D + 5 * H, created=t0 + 10 * D)
        asked(r9, t0 + 10 * D + H)
        # R10, R11 ledger prod: leads 2h and 1h; R11's fix-forward R12 comes 30h later,
        # outside the failure window, so R11 did not fail; R12 has no change: no lead.
        release("ledger", "prod", S, t0 + 11 * D + H, t0 + 11 * D + 2 * H, created=t0 + 11 * D)
        release("ledger", "prod", S, t0 + 12 * D, t0 + 12 * D + H, created=t0 + 12 * D)
        release("ledger", "prod", S, t0 + 12 * D + 31 * H, t0 + 12 * D + 32 * H, rollback=True)
        # R14 shop test: running, waiting for approval for an hour.
        r14 = release("shop", "test", ReleaseState.RUNNING, now - H, None, created=now - 2 * H)
        asked(r14, now - H)
        session.commit()
    return t0


# Worked out by hand from the comments above, for a 30-day window and a 24h failure window.
# Lead times (s): R11 3600, R13 5400, R2 7200, R10 7200, R6 10800, R8 10800, R5 14400,
# R1 17100 → median (7200+10800)/2, p90 the 8th of 8 (nearest rank).
EXPECTED: dict[tuple[str, str], dict[str, Any]] = {
    ("all", "all"): {"deployments": 9, "deployments_per_week": 2.1,
                     "lead_time": {"count": 8, "median": 9000.0, "p90": 17100.0},
                     "attempts": 11, "failures": 3, "change_failure_rate": 0.2727,
                     "restore_time": {"count": 2, "median": 10800.0, "p90": 12600.0},
                     "self_restored": 1},
    ("app", "shop"): {"deployments": 4, "lead_time": {"count": 4, "median": 10800.0,
                                                      "p90": 17100.0},
                      "attempts": 5, "failures": 2, "change_failure_rate": 0.4,
                      "restore_time": {"count": 1, "median": 9000.0, "p90": 9000.0},
                      "self_restored": 1},
    ("team", "retail"): {"deployments": 6, "attempts": 8, "failures": 3,
                         "change_failure_rate": 0.375},
    ("team", "finance"): {"deployments": 3, "attempts": 3, "failures": 0,
                          "change_failure_rate": 0.0},
    ("env_type", "prod"): {"deployments": 8, "attempts": 10, "failures": 3,
                           "change_failure_rate": 0.3},
}
# Stages over every finished release: approvals waited 1h (R1) and 4h (R9); one build, 10 min.
EXPECTED_STAGES: dict[str, Any] = {"approval": {"count": 2, "median": 9000.0, "p90": 14400.0},
                   "build": {"count": 1, "median": 600.0, "p90": 600.0}}


@pytest.fixture(name="http")
def history_api(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    """The server's API (in process) over a catalogue holding the hand-made history."""
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    store.migrate()
    write_history(store, tmp_path)
    api = create_app(Settings(state_dir=tmp_path, temporal_address="127.0.0.1:1"),
                     ReceiverSettings(), store)
    with TestClient(api) as client:
        yield client, store
    store.engine.dispose()
