"""``slipway token …`` and ``slipway build …``; build deletion against a real docker-registry."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, Baseline, Build, Environment
from catalogue.tokens import ApiToken
from integrations.registry.client import RegistryClient
from schemas.enums import AppState
from schemas.settings import get_settings
from starter.cli.build import build_cli, token_cli
from starter.service.tokens import hash_token, user_for_token
from tests.integrations.registry.test_client import push_image
from tests.support.registry import RegistryServer

runner = CliRunner()


def test_token_create_prints_once_and_stores_only_the_hash(store: Store) -> None:
    created = runner.invoke(token_cli, ["create", "lead"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("slw_")
    assert user_for_token(store, token) == "lead"
    with store.session() as session:
        [row] = session.exec(select(ApiToken)).all()
    assert (row.name, row.user, row.hash) == ("lead", "lead", hash_token(token))
    assert token not in json.dumps(row.model_dump(mode="json"))

    again = runner.invoke(token_cli, ["create", "lead"])
    assert again.exit_code == 1 and "an active token named 'lead' exists" in again.output
    assert runner.invoke(token_cli, ["revoke", "lead"]).exit_code == 0
    assert user_for_token(store, token) is None
    missing = runner.invoke(token_cli, ["revoke", "lead"])
    assert missing.exit_code == 1 and "no active token named 'lead'" in missing.output


def add_app(store: Store) -> tuple[int, int]:
    with store.session() as session:
        app = Application(name="shop", state=AppState.ONLINE)
        session.add(app)
        session.flush()
        env = Environment(app_id=app.id or 0, env_type="prod", cluster="local", lb_port=18099)
        session.add(env)
        session.commit()
    return app.id or 0, env.id or 0


@pytest.mark.integration
def test_build_delete_removes_the_manifest_unless_a_baseline_runs_it(
        store: Store, registry_server: RegistryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server = registry_server
    monkeypatch.setenv("SLIPWAY_REGISTRY", server.host)
    monkeypatch.setenv("SLIPWAY_CREDENTIALS",
                       json.dumps({"registry": f"{server.username}:{server.password}"}))
    get_settings.cache_clear()
    app_id, env_id = add_app(store)
    old = push_image(server, "team/shop", "1.0")
    new = push_image(server, "team/shop", "1.1")
    with store.session() as session:
        for label, digest in (("1.0", old), ("1.1", new)):
            session.add(Build(app_id=app_id, version_label=label, digest=digest,
                              image=f"{server.host}/team/shop:{label}", ref=f"v{label}"))
        session.add(Baseline(env_id=env_id, version=1, image=f"{server.host}/team/shop:1.0",
                             digest=old, replicas=1))
        session.commit()

    listed = runner.invoke(build_cli, ["list", "shop"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.index("v1.1") < listed.output.index("v1.0")  # newest first
    shown = runner.invoke(build_cli, ["show", "1"])
    assert "prod@local v1" in shown.output

    refused = runner.invoke(build_cli, ["delete", "1"])
    assert refused.exit_code == 1
    assert "still referenced by baseline prod@local v1" in refused.output
    deleted = runner.invoke(build_cli, ["delete", "2"])
    assert deleted.exit_code == 0, deleted.output
    assert f"deleted team/shop@{new}" in deleted.output
    assert server.password not in deleted.output

    with RegistryClient(server.url, server.username, server.password) as client:
        assert not client.exists("team/shop", new)
        assert client.exists("team/shop", old)
    with store.session() as session:
        assert [b.id for b in session.exec(select(Build)).all()] == [1]
        [event] = session.exec(select(AuditEvent).where(
            AuditEvent.action == "build.delete")).all()
    assert (event.actor, event.detail["digest"]) == ("tester", new)
    assert runner.invoke(build_cli, ["show", "2"]).exit_code == 1


def test_build_delete_of_an_engine_local_build_deletes_only_the_record(store: Store) -> None:
    app_id, _ = add_app(store)
    with store.session() as session:
        session.add(Build(app_id=app_id, version_label="v1", image="slipway/shop:v1"))
        session.commit()
    deleted = runner.invoke(build_cli, ["delete", "1"])
    assert deleted.exit_code == 0, deleted.output
    assert "not in the configured registry; record deleted" in deleted.output
    assert runner.invoke(build_cli, ["list", "shop"]).output.strip() == "shop has no builds"
