"""Schemathesis over the receiver's own OpenAPI: whatever a client sends, with or without a
valid token, the receiver answers with a status a person can act on, never a 500, and
writes nothing but audit events for what it refuses.

Temporal is unreachable here (as when the frontend is down): the receiver must say so (503)
where a request gets that far, not fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import HTTPException
from hypothesis import HealthCheck, given, settings
from sqlmodel import col, select

from catalogue.store import Store
from catalogue.tables import AuditEvent, Change, Release
from catalogue.tokens import HookDelivery
from starter.api.app import create_app
from starter.api.deps import get_client
from starter.api.settings import ReceiverSettings
from starter.service.tokens import create_token
from tests.starter.api.test_app import register
from tests.starter.api.test_app import settings as receiver_settings


def temporal_down() -> None:
    raise HTTPException(503, "cannot reach Temporal at localhost:7233")


@pytest.fixture
def fuzz_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    store.migrate()
    yield store
    store.engine.dispose()


@pytest.fixture
def token(fuzz_store: Store) -> str:
    register(fuzz_store)
    return create_token(fuzz_store, "lead",
                        roles=["read", "release", "approve", "lane-admin"])[1]


def receiver_app(store: Store, state: Path) -> object:
    api = create_app(receiver_settings(state, "fuzz"), ReceiverSettings(), store)
    api.dependency_overrides[get_client] = temporal_down
    return api


def test_the_receiver_never_answers_500(fuzz_store: Store, token: str,
                                        tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", receiver_app(fuzz_store, tmp_path))
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 9  # every route: releases, baselines, lanes, hooks

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_without_500(case: schemathesis.Case) -> None:
            for headers in ({}, {"Authorization": f"Bearer {token}"}):
                response = case.call(headers=headers)
                # 503 is the answer while Temporal is down; any other 5xx is a defect.
                assert response.status_code < 500 or response.status_code == 503, (
                    f"{case.method} {case.formatted_path} answered {response.status_code}: "
                    f"{response.text[:300]}")
                assert "Traceback" not in response.text

        answers_without_500()
    # Nothing but audit events of refusals is written: no change, release or delivery
    # (freezes a valid approve token adds or lifts are what that token may do).
    with fuzz_store.session() as session:
        assert session.exec(select(Change)).first() is None
        assert session.exec(select(Release)).first() is None
        assert session.exec(select(HookDelivery)).first() is None
        written = session.exec(select(AuditEvent.action).where(
            col(AuditEvent.action).not_in(["api.refused", "token.create"]),
            col(AuditEvent.action).not_like("freeze.%"))).all()
    assert written == []
