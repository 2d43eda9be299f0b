"""``POST /api/commands``: the server runs a command of the client as the bearer token's
user, in a process of its own, and checks the command's role and scope first.

Real command processes (forked from the server's forkserver) against a catalogue of the
test's own; Temporal is not needed for the commands used here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from typer import _click as click

from catalogue.store import Store
from catalogue.tables import Application, AuditEvent
from catalogue.tokens import ROLES
from schemas.settings import Settings
from starter.api.app import create_app
from starter.cli.main import command_tree
from starter.service.command_policy import COMMAND_ROLES
from starter.service.tokens import create_token


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    settings = Settings(state_dir=tmp_path / "state", source_roots=[tmp_path])
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    with TestClient(create_app(settings, store=store)) as client:
        yield client, store
    store.engine.dispose()


def command(client: TestClient, token: str, *argv: str,
            files: dict[int, str] | None = None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``slipway ARGV`` run by the server."""
    answer = client.post("/api/commands", json={"argv": list(argv), "files": files or {}},
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    frames = [json.loads(line) for line in answer.text.splitlines()]
    assert "exit" in frames[-1], frames
    out = "".join(frame.get("out", "") for frame in frames)
    err = " ".join("".join(frame.get("err", "") for frame in frames).split())
    return frames[-1]["exit"], out, err


def leaves(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[str]:
    subcommands = getattr(group, "commands", None)
    if subcommands is None:
        yield " ".join(path)
        return
    for name, sub in subcommands.items():
        yield from leaves(sub, (*path, name))


def test_every_command_has_exactly_one_role() -> None:
    # A command added without a role would be refused by the server: name its role here.
    assert set(leaves(command_tree())) == set(COMMAND_ROLES)


def test_the_command_runs_as_the_tokens_user_with_its_role(
        server: tuple[TestClient, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    client, store = server
    # The server's own environment names someone else: it is not who acts.
    monkeypatch.setenv("SLIPWAY_USER", "mallory")
    _, admin = create_token(store, "root", roles=list(ROLES))
    _, dev = create_token(store, "dev")
    code, _, err = command(client, dev, "app", "register", "shop", "--owner", "dev")
    assert code == 1 and "`slipway app register` needs the admin role; token dev of dev has " \
        "approve, read, release" in err
    code, out, err = command(client, admin, "app", "register", "shop", "--owner", "dev",
                             "--ready")
    assert code == 0, err
    code, out, _ = command(client, dev, "app", "list")
    assert code == 0 and "shop" in out
    with store.session() as session:
        assert session.exec(select(Application)).one().name == "shop"
        registered = session.exec(select(AuditEvent).where(
            AuditEvent.action == "app.registered")).one()
        refusal = session.exec(select(AuditEvent).where(
            AuditEvent.action == "api.refused")).one()
    assert registered.actor == "root"
    assert refusal.actor == "dev" and refusal.detail["command"] == "app register"


def test_a_token_limited_to_a_team_is_refused_on_another_teams_app(
        server: tuple[TestClient, Store]) -> None:
    client, store = server
    _, admin = create_token(store, "root", roles=list(ROLES))
    for app, team in (("pay", "a"), ("shop", "b")):
        assert command(client, admin, "app", "register", app, "--owner", "x", "--team",
                       team)[0] == 0
    _, bea = create_token(store, "bea", teams=["b"])
    assert command(client, bea, "app", "show", "shop")[0] == 0
    code, _, err = command(client, bea, "app", "show", "pay")
    assert code == 1 and "application pay (team a) is outside its scope" in err


def test_as_another_user_needs_the_admin_role(server: tuple[TestClient, Store]) -> None:
    client, store = server
    _, dev = create_token(store, "dev")
    code, _, err = command(client, dev, "approve", "shop", "prod", "--as", "lead")
    assert code == 1
    assert "--as lead: acting as another user needs the admin role" in err


def test_stack_commands_and_server_paths_are_refused(
        server: tuple[TestClient, Store], tmp_path: Path) -> None:
    client, store = server
    _, admin = create_token(store, "root", roles=list(ROLES))
    code, _, err = command(client, admin, "down", "--force")
    assert code == 1 and "run it on the machine of the stack" in err
    secret = tmp_path / "server-side.yaml"
    secret.write_text("metrics: []\n")
    command(client, admin, "app", "register", "shop", "--owner", "x", "--ready")
    command(client, admin, "env", "add", "shop", "test", "--stable", "5")
    code, _, err = command(client, admin, "analysis", "set", "shop", "test", str(secret))
    assert code == 1 and "the server reads only files sent with the command" in err
    # The same policy sent by the client: read from its upload, named as the caller named it.
    policy = ("metrics:\n  - {name: smoke, provider: web, query: 'http://127.0.0.1:9/s', "
              "field: ok, min: 1}\n")
    code, out, err = command(client, admin, "analysis", "set", "shop", "test", "mine.yaml",
                             files={4: policy})
    assert code == 0, err
    code, _, err = command(client, admin, "analysis", "set", "shop", "test", "bad.yaml",
                           files={4: "metrics: 3\n"})
    assert code == 1 and "bad.yaml is not a valid analysis policy" in err
    assert "slipway-upload" not in err


def test_no_token_or_a_wrong_one_runs_nothing(server: tuple[TestClient, Store]) -> None:
    client, _ = server
    assert client.post("/api/commands", json={"argv": ["app", "list"]}).status_code == 401
    wrong = client.post("/api/commands", json={"argv": ["app", "list"]},
                        headers={"Authorization": "Bearer slw_wrong"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid or revoked token"


def test_whoami_names_the_token_not_its_value(server: tuple[TestClient, Store]) -> None:
    client, store = server
    _, token = create_token(store, "ana", name="ana-laptop")
    me = client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"user": "ana", "token": "ana-laptop", "roles": ["approve", "read", "release"],
                  "scope": "every application"}
