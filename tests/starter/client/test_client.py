"""The ``slipway`` client on its own: where it finds its server and token, what it uploads,
what it says when it cannot act, and that it loads nothing of the platform."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from starter.client import credentials
from starter.client.main import _uploads, run
from tests.support.hermetic import UNREACHABLE_TEMPORAL

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SLIPWAY_URL", "SLIPWAY_TOKEN", "SLIPWAY_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_the_server_and_token_come_from_the_environment_then_the_saved_login(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert credentials.target() == credentials.Target("http://127.0.0.1:8470", "")
    path = credentials.save("http://slipway.internal:8470/", "slw_saved")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert credentials.target() == credentials.Target("http://slipway.internal:8470",
                                                      "slw_saved", str(path))
    # Another server never gets the saved server's token.
    monkeypatch.setenv("SLIPWAY_URL", "http://127.0.0.1:9999")
    assert credentials.target().token == ""
    monkeypatch.setenv("SLIPWAY_TOKEN", "slw_env")
    assert credentials.target() == credentials.Target("http://127.0.0.1:9999", "slw_env",
                                                      "SLIPWAY_TOKEN")


def test_a_login_others_may_read_is_refused() -> None:
    path = credentials.save("http://127.0.0.1:8470", "slw_saved")
    os.chmod(path, 0o640)
    with pytest.raises(credentials.CredentialsError, match="may be read by others"):
        credentials.target()


def test_a_bad_url_is_named() -> None:
    with pytest.raises(credentials.CredentialsError, match="must start with http"):
        credentials.target("slipway.internal:8470")


def test_files_a_command_names_are_read_here(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("metrics: []\n")
    assert _uploads(["analysis", "set", "shop", "prod", str(policy)]) == {4: "metrics: []\n"}
    assert _uploads(["env", "add", "shop", "prod", "--analysis", str(policy)]) == {
        5: "metrics: []\n"}
    assert _uploads(["env", "add", "shop", "prod", f"--analysis={policy}"]) == {
        4: "metrics: []\n"}
    assert _uploads(["status", "shop", "prod"]) == {}
    with pytest.raises(credentials.CredentialsError, match="No such file"):
        _uploads(["analysis", "set", "shop", "prod", str(tmp_path / "missing.yaml")])


def test_without_a_token_or_a_server_it_says_what_to_do(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(["app", "list"]) == 1
    assert "no API token for http://127.0.0.1:8470: log in with `slipway login`" in (
        capsys.readouterr().err)
    # A loopback port bound by this process that nothing listens on.
    monkeypatch.setenv("SLIPWAY_URL", f"http://{UNREACHABLE_TEMPORAL}")
    monkeypatch.setenv("SLIPWAY_TOKEN", "slw_any")
    assert run(["app", "list"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach Slipway's server at http://127.0.0.1:" in err
    assert "start the embedded stack with `slipway up`" in err


def test_the_client_loads_nothing_of_the_platform() -> None:
    probe = ("import sys, runpy; sys.argv = ['slipway', 'whoami'];"
             "import starter.client.main as m; m.run(['whoami']);"
             "heavy = [n for n in ('sqlalchemy', 'temporalio', 'docker', 'typer', 'pydantic',"
             " 'catalogue', 'schemas', 'rich') if n in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_each_request_carries_a_w3c_trace_context(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from starter.client.transport import traceparent

    monkeypatch.delenv("TRACEPARENT", raising=False)
    fresh = {traceparent() for _ in range(3)}
    assert len(fresh) == 3
    assert all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", value) for value in fresh)
    given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    monkeypatch.setenv("TRACEPARENT", given)  # a CI job's trace: the release joins it
    assert traceparent() == given
