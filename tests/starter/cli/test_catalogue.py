"""Behaviour of ``slipway app …`` / ``slipway env …`` through the real CLI and a SQLite store."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, Environment
from schemas.settings import get_settings
from starter.service.catalogue import allocate_lb_port, port_is_free
from tests.support.cli import ok, run


def counts(store: Store) -> tuple[int, int, int]:
    """Rows of (applications, environments, audit events)."""
    with store.session() as session:
        apps, envs, events = (
            session.exec(select(func.count()).select_from(table)).one()
            for table in (Application, Environment, AuditEvent)
        )
    return apps, envs, events


def test_register_starts_pending_review(store: Store) -> None:
    result = ok("app register shop --tier core --owner ann --approver bob")
    assert "registered shop (pending_review)" in result.stdout
    assert "pending_review" in ok("app list").stdout
    shown = ok("app show shop").stdout
    assert "pending_review" in shown and "core" in shown and "bob" in shown
    with store.session() as session:
        event = session.exec(select(AuditEvent)).one()
    assert (event.action, event.actor, event.app) == ("app.registered", "tester", "shop")


def test_register_ready_and_source(store: Store, tmp_path: Path) -> None:
    ok(f"app register shop --ready --source {shlex.quote(str(tmp_path))}")
    ok("app register cart --source git@example.com:team/cart.git")
    listing = ok("app list").stdout
    assert "shop" in listing and "ready" in listing
    assert str(tmp_path.resolve()) in ok("app show shop").stdout
    with store.session() as session:
        shop = session.exec(select(Application).where(Application.name == "shop")).one()
    assert shop.state == "ready" and shop.owners == ["tester"]


def test_ready_then_retire_steps(store: Store) -> None:
    ok("app register shop")
    assert "pending_review → ready" in ok("app ready shop").stdout
    assert "ready → retiring" in ok("app retire shop").stdout
    assert "retiring → offline" in ok("app retire shop").stdout


def test_env_add_allocates_distinct_lb_ports(store: Store) -> None:
    ok("app register shop --ready")
    first = ok("env add shop prod --replicas 3 --cpu 500m --memory 256Mi "
               "--port 8080 --port 9090 --env MODE=live").stdout
    second = ok("env add shop test").stdout
    assert "shop prod@local" in first and "http://127.0.0.1:" in first
    assert "shop test@local" in second
    with store.session() as session:
        envs = {e.env_type: e for e in session.exec(select(Environment)).all()}
    assert envs["prod"].lb_port != envs["test"].lb_port
    assert f"http://127.0.0.1:{envs['prod'].lb_port}/" in first
    assert envs["prod"].ports == [8080, 9090] and envs["prod"].env_vars == {"MODE": "live"}
    assert envs["test"].ports == [8080] and envs["test"].replicas == 1
    listing = ok("env list shop").stdout
    assert "prod@local" in listing and "test@local" in listing
    shown = ok("env show shop prod").stdout
    assert "prod@local" in shown and "256Mi" in shown and "no baselines yet" in shown
    assert "prod@local" in ok("app show shop").stdout


BAD_INPUT = [
    pytest.param("app show nope", ["unknown application", "nope"], id="unknown-app"),
    pytest.param("env add nope prod", ["unknown application"], id="env-unknown-app"),
    pytest.param("env show shop dev", ["no environment", "dev"], id="unknown-env"),
    pytest.param("env add shop dev --replicas 0",
                 ["replicas must be between 1 and 24, got 0"], id="replicas-0"),
    pytest.param("env add shop dev --replicas 25",
                 ["replicas must be between 1 and 24, got 25"], id="replicas-25"),
    pytest.param("env add shop prod",
                 ["already has environment prod@local", "slipway env show"], id="duplicate-env"),
    pytest.param("env add shop dev --cluster mars",
                 ["unknown cluster 'mars'", "local", "SLIPWAY_CLUSTERS"], id="unknown-cluster"),
    pytest.param("app register Shop_1", ["invalid application name", "DNS-1123"],
                 id="bad-app-name"),
    pytest.param("app register shop", ["already exists"], id="duplicate-app"),
    pytest.param("env add shop dev --memory 12XB", ["memory", "12XB"], id="bad-memory"),
    pytest.param("env add shop dev --cpu lots", ["cpu", "500m"], id="bad-cpu"),
    pytest.param("env add shop dev --port 70000", ["port", "65535"], id="bad-port"),
    pytest.param("env add shop dev --env 1X=y", ["env var name"], id="bad-env-var"),
    pytest.param("env add shop dev --runtime kubernetes",
                 ["cluster 'local' runs docker, not kubernetes"], id="runtime-not-cluster's"),
    pytest.param("env add gone dev", ["offline"], id="env-on-offline-app"),
    pytest.param("app retire gone", ["already offline"], id="retire-offline"),
    pytest.param("app ready shop", ["is ready", "pending_review"], id="ready-twice"),
    pytest.param("app register x --source /no/such/dir",
                 ["neither an existing directory nor a git URL"], id="bad-source"),
    pytest.param("app register x --source https://ci:glpat-s3cret@gitlab.example.com/t/x.git",
                 ["carries a user, password or token", "never go into the catalogue"],
                 id="secret-in-source"),
    pytest.param("app register x --source https://glpat-s3cret@gitlab.example.com/t/x.git",
                 ["carries a user, password or token"], id="token-as-url-user"),
    pytest.param("app register x --source '--upload-pack=touch /tmp/slipway-pwned #.git'",
                 ["starts with '-'", "option"], id="option-injection-source"),
    pytest.param("app register x --source 'ext::sh -c touch% /tmp/slipway-pwned'",
                 ["remote helper"], id="ext-transport"),
    pytest.param("app register x --source /root", ["outside the allowed source roots",
                                                   "SLIPWAY_SOURCE_ROOTS"], id="outside-roots"),
    pytest.param("release shop prod --ref=--output=/tmp/slipway-pwned",
                 ["starts with '-'"], id="option-injection-ref"),
    pytest.param("change create shop prod --ref=-b", ["starts with '-'"], id="option-ref-change"),
    pytest.param("release shop prod --image 'foo bar'", ["invalid image reference 'foo bar'"],
                 id="image-with-space"),
    pytest.param("release shop prod --image '$(id)'", ["invalid image reference"],
                 id="image-shell"),
    pytest.param("change create shop prod --image 'a b'", ["invalid image reference"],
                 id="change-image-space"),
    pytest.param("token create 'a\nb'", ["invalid token user 'a\\nb'"], id="user-newline"),
    pytest.param("app register x --approver 'lead;rm'", ["invalid approver 'lead;rm'"],
                 id="approver-bad-name"),
    pytest.param("approve shop prod --as 'a b'", ["invalid --as user 'a b'"], id="as-bad-user"),
    pytest.param("env add shop dev --health-path '/healthz#x'", ["invalid health path",
                                                                "no spaces, quotes or '#'"],
                 id="health-path-comment"),
    pytest.param("env add shop dev --health-path '/a b'", ["invalid health path"],
                 id="health-path-space"),
    pytest.param("env add shop dev --stable 2d", ["stable time of 2d is out of range",
                                                  "0s to 1d"], id="stable-too-long"),
    pytest.param("env add shop dev --approval-timeout 0", ["approval timeout of 0s"],
                 id="approval-timeout-zero"),
]


@pytest.mark.parametrize(("command", "words"), BAD_INPUT)
def test_bad_input_is_one_line_and_writes_nothing(populated: Store, command: str,
                                                  words: list[str]) -> None:
    before = counts(populated)
    result = run(command)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    assert result.stdout == ""
    assert counts(populated) == before


def test_lb_port_allocation_skips_a_bound_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        assert not port_is_free("127.0.0.1", busy)
        port = allocate_lb_port(set(), busy, "127.0.0.1")
        assert port > busy
        assert port_is_free("127.0.0.1", port)
        # Ports held by environments in the catalogue are skipped too.
        assert allocate_lb_port({port}, busy, "127.0.0.1") > port


def test_lb_port_allocation_skips_catalogue_ports(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                  ) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        start = held.getsockname()[1]
        monkeypatch.setenv("SLIPWAY_LB_PORT_START", str(start))
        get_settings.cache_clear()
        ok("app register shop")
        ok("env add shop dev")
        ok("env add shop prod")
    with store.session() as session:
        ports = sorted(e.lb_port for e in session.exec(select(Environment)).all())
    assert start not in ports and len(set(ports)) == 2 and ports[0] > start


def test_a_bad_slipway_user_is_refused_before_any_command(store: Store,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPWAY_USER", "ana\nlead")
    result = run("app register x")
    assert result.exit_code == 1
    assert "invalid SLIPWAY_USER 'ana\\nlead'" in result.stderr
    assert counts(store) == (0, 0, 0)
