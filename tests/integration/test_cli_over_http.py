"""The ``slipway`` client against a real ``slipway server`` over HTTP: the command set works
through the server, who acts is the token's user, and the client holds no other key.

The client processes get a server URL and a token and nothing else (the hermetic Temporal
address and catalogue are unreachable / empty), so every answer below came through the
server. People: ``root`` (the admin the stack's first start makes), ``dev`` of team ``a``
(default roles, scoped to its team), ``lead`` (approver of team a's app) and ``bea`` of
team ``b``.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import urllib.request
from pathlib import Path

import docker
import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from catalogue.tables import AuditEvent
from catalogue.tokens import ROLES
from schemas.settings import Settings
from starter.service.tokens import create_token
from tests.support.server import client_env, slipway, slipway_server

pytestmark = pytest.mark.integration

APP, OTHER = "httpa", "httpb"
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-app"


@pytest.fixture
def cleanup_containers(docker_client: docker.DockerClient) -> object:
    yield None
    for app in (APP, OTHER):
        for container in docker_client.containers.list(all=True,
                                                       filters={"label": f"slipway.app={app}"}):
            container.remove(force=True)


def ok(env: dict[str, str], *args: str) -> str:
    done = slipway(env, *args)
    assert done.returncode == 0, f"slipway {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def raw_command(url: str, token: str, argv: list[str]) -> str:
    """POST /api/commands by hand; the text of its stderr frames."""
    request = urllib.request.Request(
        f"{url}/api/commands", data=json.dumps({"argv": argv}).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        frames = [json.loads(line) for line in answer.read().splitlines() if line.strip()]
    assert frames[-1] == {"exit": 1}, frames
    return " ".join("".join(frame.get("err", "") for frame in frames).split())


def refused(env: dict[str, str], *args: str) -> str:
    done = slipway(env, *args)
    assert done.returncode == 1, f"slipway {' '.join(args)}: {done.stdout}{done.stderr}"
    return " ".join(done.stderr.split())


async def test_the_cli_works_through_the_server_as_the_tokens_user(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    tmp_path: Path, cleanup_containers: object,
) -> None:
    _, root = create_token(store, "root", name="root-local", roles=list(ROLES))
    with slipway_server(settings, tmp_path / "server.log",
                        SLIPWAY_TEMPORAL_ADDRESS=temporal.client.service_client.config
                        .target_host) as url:
        admin = client_env(url, root)
        run = lambda *args: asyncio.to_thread(ok, admin, *args)  # noqa: E731

        # The admin shapes the catalogue and hands out tokens, all through the server.
        await run("app", "register", APP, "--category", "in-house", "--tier", "edge",
                  "--owner", "dev", "--approver", "lead", "--approver", "dev", "--team", "a",
                  "--source", str(SAMPLE), "--ready")
        await run("app", "register", OTHER, "--category", "in-house", "--tier", "edge",
                  "--owner", "bea", "--team", "b", "--source", str(SAMPLE), "--ready")
        policy = tmp_path / "policy.yaml"  # a file on the client's side: uploaded
        policy.write_text("metrics:\n  - {name: smoke, provider: web, query: "
                          "'http://127.0.0.1:9/s', field: ok, min: 1}\n")
        await run("env", "add", APP, "test", "--strategy", "recreate", "--stable", "1",
                  "--approval", "required", "--memory", "64Mi")
        created = await run("token", "create", "dev", "--team", "a")
        dev = client_env(url, created.strip().splitlines()[-1])
        lead = client_env(url, create_token(store, "lead", name="lead")[1])
        bea = client_env(url, create_token(store, "bea", name="bea", teams=["b"])[1])

        # Who acts is the token's user: SLIPWAY_USER in the client's environment is nothing.
        me = await asyncio.to_thread(ok, {**dev, "SLIPWAY_USER": "lead"}, "whoami")
        assert me.startswith("dev at ") and "team a" in me
        # Roles and scopes, checked by the server, refusals audited.
        assert "needs the admin role" in await asyncio.to_thread(
            refused, dev, "app", "register", "mine", "--category", "in-house", "--tier",
            "edge", "--owner", "dev")
        assert "needs the admin role" in await asyncio.to_thread(
            refused, dev, "analysis", "set", APP, "test", str(policy))
        assert "--as lead: acting as another user needs the admin role" in (
            await asyncio.to_thread(refused, dev, "approve", APP, "test", "--as", "lead"))
        outside = await asyncio.to_thread(refused, bea, "status", APP, "test")
        assert (f"token bea of bea is limited to team b: application {APP} (team a) is outside "
                "its scope") in outside
        # The stack's own commands never run through the server, even for an admin who
        # sends one by hand (the client runs them on its own machine).
        assert "run it on the machine of the stack" in await asyncio.to_thread(
            raw_command, url, root, ["down", "--force"])

        # A release by dev waits for lead; dev cannot approve it himself, lead can.
        started = await asyncio.to_thread(ok, {**dev, "SLIPWAY_USER": "lead"}, "release",
                                          APP, "test")
        assert "release started" in started
        while "awaiting approval" not in (shown := await asyncio.to_thread(
                ok, dev, "status", APP, "test")):
            assert "failed" not in shown, shown
            await asyncio.sleep(1)
        assert "requested by dev" in " ".join(shown.split()), shown
        assert "four eyes: dev requested" in await asyncio.to_thread(
            refused, dev, "approve", APP, "test")
        approved = await asyncio.to_thread(ok, lead, "approve", APP, "test", "--comment", "go")
        assert "lead approved" in approved
        watched = await asyncio.to_thread(ok, dev, "status", APP, "test", "--watch")
        assert "stage succeeded" in watched, watched

        # The read side of the command set, every group once, through the server.
        for args in (["app", "list"], ["app", "show", APP], ["env", "list", APP],
                     ["env", "show", APP, "test"], ["release", "history", APP, "test"],
                     ["release", "show", APP, "test"], ["baseline", "list", APP, "test"],
                     ["change", "list", APP], ["build", "list", APP],
                     ["analysis", "show", APP, "test"], ["freeze", "list"],
                     ["lane", "list"], ["train", "list"], ["rejected", "list", APP],
                     ["--help"], ["release", "--help"]):
            assert await asyncio.to_thread(ok, dev, *args)
        # Changes and freezes, each by someone whose role allows it.
        created = await asyncio.to_thread(ok, dev, "change", "create", APP, "test", "--kind",
                                          "scale", "--replicas", "1", "--note", "one will do")
        change_id = created.split("created change ")[1].split()[0]
        assert "one will do" in await asyncio.to_thread(ok, dev, "change", "show", change_id)
        await asyncio.to_thread(ok, dev, "change", "close", change_id)
        frozen = await asyncio.to_thread(ok, lead, "freeze", "now", "--reason", "INC-1",
                                         "--scope", "test")
        rule = frozen.split("incident freeze #")[1].split()[0]
        assert "`slipway freeze remove` needs the freeze-admin role" in await asyncio.to_thread(
            refused, lead, "freeze", "remove", rule)
        assert f"removed #{rule}" in await run("freeze", "remove", rule)
        await run("analysis", "set", APP, "test", str(policy))
        assert "smoke" in await asyncio.to_thread(ok, dev, "analysis", "show", APP, "test")
        # A server-side path is never read for a caller: only what the client uploaded.
        assert "the server reads only files sent with the command" in await asyncio.to_thread(
            raw_command, url, root, ["analysis", "set", APP, "test", "/etc/hostname"])
        await run("analysis", "clear", APP, "test")
        await run("token", "revoke", "bea")
        assert "refused the token" in await asyncio.to_thread(refused, bea, "app", "list")

    with store.session() as session:
        events = session.exec(select(AuditEvent).where(
            AuditEvent.action == "api.refused")).all()
        release_events = session.exec(select(AuditEvent).where(
            AuditEvent.action == "release.started")).all()
    assert {event.detail.get("command") for event in events} >= {
        "app register", "analysis set", "status", "down"}
    assert all("slw_" not in json.dumps(event.detail) for event in events)
    assert [event.actor for event in release_events] == ["dev"]


def test_login_saves_a_checked_token_readable_by_its_owner_only(
    settings: Settings, store: Store, tmp_path: Path,
) -> None:
    _, token = create_token(store, "ana", name="ana")
    with slipway_server(settings, tmp_path / "server.log") as url:
        home = tmp_path / "config"
        env = client_env(url, "", XDG_CONFIG_HOME=str(home))
        del env["SLIPWAY_TOKEN"]
        assert "no API token" in " ".join(slipway(env, "app", "list").stderr.split())
        wrong = slipway(env, "login", stdin="slw_wrong\n")
        assert wrong.returncode == 1 and "refused that token" in wrong.stderr
        assert not (home / "slipway" / "credentials.json").exists()
        done = slipway(env, "login", stdin=token + "\n")
        assert done.returncode == 0, done.stderr
        saved = home / "slipway" / "credentials.json"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert "ana at" in slipway(env, "whoami").stdout
        assert slipway(env, "app", "list").returncode == 0
        # Another server is never sent this server's token.
        elsewhere = slipway({**env, "SLIPWAY_URL": "http://127.0.0.1:9"}, "app", "list")
        assert "no API token for http://127.0.0.1:9" in elsewhere.stderr
        os.chmod(saved, 0o644)
        loose = slipway(env, "app", "list")
        assert loose.returncode == 1 and "may be read by others" in loose.stderr
        os.chmod(saved, 0o600)
        assert "forgot" in slipway(env, "logout").stdout
        assert not saved.exists()
