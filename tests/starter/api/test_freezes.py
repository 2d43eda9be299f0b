"""The receiver's freeze endpoints: roles, validation, and an incident freeze from a phone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from catalogue.store import Store
from catalogue.tables import AuditEvent
from schemas.settings import Settings
from starter.api.app import create_app
from starter.api.settings import ReceiverSettings
from starter.service.tokens import create_token


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    store.migrate()
    # Nothing listens on port 1: running releases cannot be told, the rules still stand.
    api = create_app(Settings(state_dir=tmp_path, temporal_address="127.0.0.1:1"),
                     ReceiverSettings(), store)
    with TestClient(api) as client:
        yield client, store
    store.engine.dispose()


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}


def test_freezes_need_the_approve_role_and_say_what_to_fix(
    http: tuple[TestClient, Store],
) -> None:
    client, store = http
    _, reader = create_token(store, "viewer", roles=["read"])
    _, lead = create_token(store, "lead", roles=["read", "approve"])
    weekend = {"scope": "prod", "reason": "promotion weekend", "start": "2026-12-04 18:00",
               "rrule": "FREQ=WEEKLY;BYDAY=FR", "duration": "60h", "timezone": "Asia/Shanghai"}
    assert client.post("/api/freezes", json=weekend, headers=bearer(reader)).status_code == 403
    created = client.post("/api/freezes", json=weekend, headers=bearer(lead))
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == "lead"
    bad = client.post("/api/freezes", json={**weekend, "rrule": "FREQ=MINUTELY"},
                      headers=bearer(lead))
    assert bad.status_code == 422 and "recur at most hourly" in bad.json()["detail"]
    listed = client.get("/api/freezes", headers=bearer(reader)).json()
    assert [rule["reason"] for rule in listed] == ["promotion weekend"]
    incident = client.post("/api/freezes/now", json={"reason": "db failover"},
                           headers=bearer(lead))
    assert incident.status_code == 201 and incident.json()["incident"] is True
    assert incident.json()["held"] == []  # Temporal unreachable: nobody told, rule stored
    _, admin = create_token(store, "sre", roles=["read", "freeze-admin"])
    assert client.delete("/api/freezes/99", headers=bearer(admin)).status_code == 404
    assert client.delete(f"/api/freezes/{2**70}", headers=bearer(admin)).status_code == 404
    lifted = client.delete(f"/api/freezes/{incident.json()['id']}", headers=bearer(admin))
    assert lifted.status_code == 200
    assert lifted.json()["woken"] == []
    assert len(client.get("/api/freezes", headers=bearer(reader)).json()) == 1


def test_lifting_a_freeze_needs_the_freeze_admin_role_which_no_token_has_by_default(
    http: tuple[TestClient, Store],
) -> None:
    client, store = http
    _, lead = create_token(store, "lead")  # default roles: read, release, approve
    _, admin = create_token(store, "sre", roles=["freeze-admin"])
    incident = client.post("/api/freezes/now", json={"reason": "db failover"},
                           headers=bearer(lead))
    assert incident.status_code == 201
    rule = incident.json()["id"]
    refused = client.delete(f"/api/freezes/{rule}", headers=bearer(lead))
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "token lead of lead lacks the freeze-admin role (it has approve, read, release); ask "
        "an admin for `slipway token create lead --role freeze-admin`")
    assert [r["id"] for r in client.get("/api/freezes", headers=bearer(lead)).json()] == [rule]
    with store.session() as session:
        audited = session.exec(select(AuditEvent).where(
            AuditEvent.action == "api.refused")).one()
    assert audited.actor == "lead" and "freeze-admin" in audited.detail["reason"]
    lifted = client.delete(f"/api/freezes/{rule}", headers=bearer(admin))
    assert lifted.status_code == 200 and lifted.json()["id"] == rule
    assert client.get("/api/freezes", headers=bearer(lead)).json() == []
