"""``slipway analysis …`` and ``env add --analysis``: a policy is checked whole before it is
stored, and a refused one changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from catalogue.store import Store
from catalogue.tables import AuditEvent, Environment
from schemas.settings import get_settings
from tests.support.cli import ok, run

POLICY = """\
metrics:
  - name: errors
    query: error_rate
    max: 0.02
    min_sample: 50
  - name: latency
    query: response_time_ms
    max_increase: 100
    mode: dry-run
"""


def policy_file(tmp_path: Path, text: str, name: str = "analysis.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def stored(store: Store) -> dict[str, object]:
    with store.session() as session:
        return session.exec(select(Environment)).one().analysis


def test_set_show_and_clear_a_policy(populated: Store, tmp_path: Path) -> None:
    answer = ok(f"analysis set shop prod {policy_file(tmp_path, POLICY)}").stdout
    assert "every stable wait is judged by errors, latency" in answer
    shown = ok("analysis show shop prod").stdout
    assert "name: errors" in shown and "mode: dry-run" in shown and "min_sample: 50" in shown
    with populated.session() as session:
        event = session.exec(select(AuditEvent).where(
            AuditEvent.action == "env.analysis_set")).one()
    assert event.detail["metrics"] == ["errors", "latency"]
    ok("analysis clear shop prod")
    assert stored(populated) == {}
    assert "has no analysis policy" in ok("analysis show shop prod").stdout


def test_json_policies_are_accepted_too(populated: Store, tmp_path: Path) -> None:
    raw = {"metrics": [{"name": "errors", "query": "error_rate", "max": 0.05}]}
    ok(f"analysis set shop prod {policy_file(tmp_path, json.dumps(raw), 'a.json')}")
    assert stored(populated)["metrics"][0]["max"] == 0.05  # type: ignore[index]


@pytest.mark.parametrize(("text", "message"), [
    ("metrics:\n  - name: errors\n    query: error_rate\n    max: .nan\n",
     "metrics.0.max: Input should be a finite number"),
    ("metrics:\n  - name: errors\n    query: error_count\n    max: 1\n",
     "the haproxy provider measures error_rate, response_time_ms, requests"),
    ("metrics: [", "is not YAML or JSON"),
    ("metrics:\n  - {name: e, query: error_rate, max: 1, interval_seconds: 0}\n",
     "interval_seconds: Input should be greater than or equal to 1"),
])
def test_a_bad_policy_is_refused_with_the_reason_and_nothing_is_stored(
        populated: Store, tmp_path: Path, text: str, message: str) -> None:
    result = run(f"analysis set shop prod {policy_file(tmp_path, text)}")
    assert result.exit_code == 1
    assert message in result.output
    assert stored(populated) == {}


def test_a_policy_with_more_intervals_than_a_history_holds_is_refused(
        populated: Store, tmp_path: Path) -> None:
    ok("env add shop staging --strategy gray --replicas 4 --stable 24h")
    text = "metrics:\n  - {name: e, query: error_rate, max: 1, interval_seconds: 10}\n"
    result = run(f"analysis set shop staging {policy_file(tmp_path, text)}")
    assert result.exit_code == 1
    assert "analysis intervals, over the maximum of 2000" in result.output


def test_env_add_takes_a_policy_and_refuses_the_environment_with_a_bad_one(
        populated: Store, tmp_path: Path) -> None:
    bad = policy_file(tmp_path, "metrics:\n  - {name: e, query: up, max: 1}\n", "bad.yaml")
    result = run(f"env add shop canary --strategy gray --analysis {bad}")
    assert result.exit_code == 1 and "haproxy provider measures" in result.output
    ok(f"env add shop canary --strategy gray --analysis {policy_file(tmp_path, POLICY)}")
    assert "errors (enforcing), latency (dry-run)" in ok("env show shop canary").stdout
    assert "errors" in ok("analysis show shop canary").stdout


def test_a_prometheus_that_cannot_be_reached_refuses_the_policy(
        populated: Store, tmp_path: Path) -> None:
    text = ("metrics:\n  - {name: p95, provider: prometheus, address: 'http://127.0.0.1:9',"
            " query: up, max: 1}\n")
    result = run(f"analysis set shop prod {policy_file(tmp_path, text)}")
    assert result.exit_code == 1
    assert "metric 'p95': cannot reach Prometheus at http://127.0.0.1:9" in result.output


def test_run_and_release_show_explain_what_is_missing(populated: Store, tmp_path: Path) -> None:
    result = run("analysis run shop prod --window 1s")
    assert result.exit_code == 1 and "has no analysis policy" in result.output
    ok(f"analysis set shop prod {policy_file(tmp_path, POLICY)}")
    result = run("analysis run shop prod --window 1s")
    assert result.exit_code == 1 and "nothing runs on shop prod@local yet" in result.output
    result = run("analysis run shop prod --window 1h")
    assert result.exit_code == 1 and "analysis window of 1h is out of range" in result.output
    result = run("release show shop prod")
    assert result.exit_code == 1 and "no releases of shop on prod@local yet" in result.output


@pytest.mark.parametrize(("url", "listed", "message"), [
    ("http://169.254.169.254/latest/meta-data/iam", '["169.254.169.254"]',
     "169.254.169.254 is a link-local or cloud metadata address: the web provider never asks "
     "it, whatever SLIPWAY_ANALYSIS_WEB_HOSTS lists"),
    ("http://[fd00:ec2::254]/latest", '["fd00:ec2::254"]',
     "fd00:ec2::254 is a link-local or cloud metadata address"),
    ("http://10.1.2.3:9000/smoke", "", "10.1.2.3:9000 is not on SLIPWAY_ANALYSIS_WEB_HOSTS"),
    ("http://metrics.internal/smoke", '["metrics.internal:8080"]',
     "metrics.internal:80 is not on SLIPWAY_ANALYSIS_WEB_HOSTS"),
])
def test_a_web_metric_outside_the_allowed_hosts_is_refused_at_analysis_set(
        populated: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str,
        listed: str, message: str) -> None:
    if listed:
        monkeypatch.setenv("SLIPWAY_ANALYSIS_WEB_HOSTS", listed)
    get_settings.cache_clear()
    text = (f"metrics:\n  - {{name: smoke, provider: web, query: '{url}', field: ok, "
            "min: 1}\n")
    result = run(f"analysis set shop prod {policy_file(tmp_path, text)}")
    assert result.exit_code == 1
    assert f"metric 'smoke': {message}" in " ".join(result.output.split())
    assert stored(populated) == {}


def test_a_web_metric_on_an_allowed_host_is_accepted(populated: Store, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPWAY_ANALYSIS_WEB_HOSTS", '["127.0.0.1", "metrics.internal:8080"]')
    get_settings.cache_clear()
    text = ("metrics:\n  - {name: smoke, provider: web, query: 'http://127.0.0.1:9/s', "
            "field: ok, min: 1}\n  - {name: lag, provider: web, query: "
            "'http://metrics.internal:8080/{{app}}', field: lag, max: 5}\n")
    ok(f"analysis set shop prod {policy_file(tmp_path, text)}")
    metrics = stored(populated)["metrics"]
    assert isinstance(metrics, list) and [m["name"] for m in metrics] == ["smoke", "lag"]


def analysis_of(store: Store, env_type: str) -> dict[str, object] | None:
    with store.session() as session:
        found = session.exec(select(Environment).where(
            Environment.env_type == env_type)).one_or_none()
        return None if found is None else found.analysis


def test_a_policy_on_an_environment_without_a_stable_wait_is_refused_and_nothing_stored(
        populated: Store, tmp_path: Path) -> None:
    ok("env add shop canary --strategy gray --stable 0")
    result = run(f"analysis set shop canary {policy_file(tmp_path, POLICY)}")
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "shop canary@local: analysis needs a stable wait" in said
    assert "set --stable (e.g. --stable 60s)" in said
    assert analysis_of(populated, "canary") == {}
    with populated.session() as session:
        assert session.exec(select(AuditEvent).where(
            AuditEvent.action == "env.analysis_set")).first() is None


def test_env_add_refuses_a_policy_without_a_stable_wait_and_adds_nothing(
        populated: Store, tmp_path: Path) -> None:
    result = run(f"env add shop dev --strategy recreate --stable 0 --analysis "
                 f"{policy_file(tmp_path, POLICY)}")
    assert result.exit_code == 1
    assert "analysis needs a stable wait" in " ".join(result.output.split())
    assert analysis_of(populated, "dev") is None  # no environment


def test_a_recreate_environment_takes_a_policy_judged_after_the_new_version_starts(
        populated: Store, tmp_path: Path) -> None:
    ok(f"env add shop dev --strategy recreate --stable 60 --analysis "
       f"{policy_file(tmp_path, POLICY)}")
    assert analysis_of(populated, "dev")
    # A deciding metric that only compares with the baseline could never pass there: the
    # old version is stopped before the new one serves.
    text = "metrics:\n  - {name: slow, query: response_time_ms, max_ratio: 2}\n"
    result = run(f"analysis set shop dev {policy_file(tmp_path, text, 'ratio.yaml')}")
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "slow only compares with the baseline, and a recreate release stops the old" in said
    assert "add max or min, or make it dry-run" in said
    assert analysis_of(populated, "dev")["metrics"][0]["name"] == "errors"  # type: ignore[index]
