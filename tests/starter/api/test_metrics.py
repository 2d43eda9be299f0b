"""``GET /metrics``: Slipway's own figures from the catalogue, in Prometheus' text format;
and the example alert rules of deploy/prometheus/, checked and unit-tested by promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from catalogue.store import Store
from starter.service.tokens import create_token
from tests.support.insights_history import (
    history_api,  # noqa: F401  (the `http` fixture)
    )

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "deploy" / "prometheus" / "slipway-rules.yml"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_need_a_reader_and_hold_the_catalogue_figures(
        http: tuple[TestClient, Store]) -> None:
    client, store = http
    assert client.get("/metrics").status_code == 401
    _, reader = create_token(store, "prometheus", roles=["read"])
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    got: dict[Any, float] = samples(answer.text)
    assert got["slipway_releases_total", (("app", "shop"), ("env_type", "prod"),
                                          ("outcome", "succeeded"))] == 5  # R0–R3, R5
    assert got["slipway_releases_total", (("app", "cart"), ("env_type", "prod"),
                                          ("outcome", "failed"))] == 1
    assert got["slipway_releases_running", (("app", "shop"), ("env", "test@local"))] == 1
    assert got["slipway_approvals_waiting", (("app", "shop"), ("env", "test@local"))] == 1
    age = next(v for (name, labels), v in got.items()
               if name == "slipway_approval_wait_age_seconds")
    assert 3600 <= age < 3700  # R14 has waited an hour
    assert got["slipway_dora_change_failure_ratio", (("app", "all"),)] == 0.2727
    assert got["slipway_dora_deployments", (("app", "shop"),)] == 4
    assert got["slipway_lanes_active", ()] == 0


def test_the_alert_rules_pass_promtool_and_fire_on_a_stuck_approval(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is needed (Debian package prometheus): scripts/bootstrap.sh")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # An approval wait growing by a minute a minute from 1h50m: past 2h after 10 minutes.
    cases = tmp_path / "approval_test.yml"
    cases.write_text(f"""rule_files: ["{RULES}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'slipway_approval_wait_age_seconds{{app="shop",env="prod@local",release_id="7"}}'
        values: '6600+60x20'
    alert_rule_test:
      - eval_time: 5m
        alertname: SlipwayReleaseWaitingForApproval
        exp_alerts: []
      - eval_time: 15m
        alertname: SlipwayReleaseWaitingForApproval
        exp_alerts:
          - exp_labels: {{severity: warning, app: shop, env: prod@local}}
            exp_annotations:
              summary: "shop on prod@local has waited 2h 5m 0s for approval"
              description: "Ask an approver of shop: `slipway status shop prod@local` names them."
""")
    tested = subprocess.run([promtool, "test", "rules", str(cases)], capture_output=True,
                            text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
