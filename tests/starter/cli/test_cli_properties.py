"""Property-based bad input through the CLI itself: whatever lands in a command's arguments
(names, replicas, memory, cpu, steps, durations, refs, env variables), ``slipway`` exits 0,
1 (refused, one line) or 2 (malformed command line), never with a traceback, and a refused
command writes nothing to the catalogue."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select
from typer.testing import Result

from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, Environment
from schemas.settings import get_settings
from starter.cli.main import cli
from tests.support.cli import ok, runner

# What a person or a script may type, including what has broken parsers before.
WORDS = (st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"],
                                        exclude_characters="\x00"), max_size=30)
         | st.sampled_from(["0", "-1", "25", "1e9", "64Mi", "0.5", "500m", "10Gi", "1,50%,100%",
                            "0%", "101%", "30s", "0s", "400d", "v1..2", "-rf", "--help", "a b",
                            "x\ny", "${credential:x}", "A=B", "=B", "A"]))
PROPERTIES = settings(max_examples=120, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal's address points at a closed loopback port: nothing can start for real."""
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", "127.0.0.1:9")
    get_settings.cache_clear()


def invoke(args: list[str]) -> Result:
    return runner.invoke(cli, args)


def rows(store: Store) -> tuple[int, int, int]:
    with store.session() as session:
        return (len(session.exec(select(Application)).all()),
                len(session.exec(select(Environment)).all()),
                len(session.exec(select(AuditEvent)).all()))


def assert_clean(result: Result, before: tuple[int, int, int], store: Store) -> None:
    output = result.output  # stdout and stderr, as a terminal shows them
    assert result.exit_code in (0, 1, 2), (result.exit_code, output, result.exception)
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    if result.exit_code != 0:
        assert rows(store) == before, output  # refused: nothing written, not even half
        if result.exit_code == 1:
            assert len(output.strip().splitlines()) == 1, output


@PROPERTIES
@given(env=WORDS, replicas=WORDS, cpu=WORDS, memory=WORDS, steps=WORDS, stable=WORDS,
       variable=WORDS)
def test_env_add_refuses_or_records_whole(store: Store, env: str, replicas: str, cpu: str,
                                          memory: str, steps: str, stable: str,
                                          variable: str) -> None:
    if not rows(store)[0]:
        ok("app register shop --ready")
    before = rows(store)
    result = invoke(["env", "add", "shop", env, "--replicas", replicas, "--cpu", cpu,
                     "--memory", memory, "--strategy", "gray", "--steps", steps,
                     "--stable", stable, "--env", variable])
    assert_clean(result, before, store)


@PROPERTIES
@given(name=WORDS, owner=WORDS, source=WORDS)
def test_app_register_refuses_or_records_whole(store: Store, name: str, owner: str,
                                               source: str) -> None:
    before = rows(store)
    result = invoke(["app", "register", name, "--owner", owner, "--source", source])
    assert_clean(result, before, store)


@PROPERTIES
@given(ref=WORDS, label=WORDS)
def test_release_arguments_are_refused_before_anything_starts(
    store: Store, nothing_listens: None, ref: str, label: str,
) -> None:
    if not rows(store)[0]:
        ok("app register shop --ready")
        ok("env add shop prod")
    before = rows(store)
    # Nothing listens on the Temporal address: a valid command ends in a one-line "cannot
    # reach Temporal"; an invalid one is refused before that.
    result = invoke(["release", "shop", "prod", "--ref", ref, "--version", label])
    output = result.output  # stdout and stderr, as a terminal shows them
    assert result.exit_code in (1, 2) or "Usage:" in output, output  # --help: help, nothing run
    assert "Traceback" not in output
    assert rows(store)[:2] == before[:2]


@PROPERTIES
@given(name=WORDS, ttl=WORDS, grace=WORDS)
def test_lane_create_refuses_bad_names_and_durations_in_one_line(
    store: Store, nothing_listens: None, name: str, ttl: str, grace: str,
) -> None:
    result = invoke(["lane", "create", name, "--apps", "shop", "--ttl", ttl, "--grace", grace])
    output = result.output  # stdout and stderr, as a terminal shows them
    assert result.exit_code in (1, 2) or "Usage:" in output, output  # --help: help, nothing run
    assert "Traceback" not in output
