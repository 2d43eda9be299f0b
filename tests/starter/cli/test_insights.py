"""``slipway insights`` on a catalogue holding a hand-made history: the four measures it
prints (table, JSON, CSV) equal the figures worked out by hand (tests/support/insights_history)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from catalogue.store import Store
from integrations.commits import commit_time
from starter.cli.console import console
from tests.support.cli import ok, run
from tests.support.insights_history import EXPECTED, EXPECTED_STAGES, write_history


@pytest.fixture
def history(store: Store, tmp_path: Path) -> Store:
    write_history(store, tmp_path)
    return store


def _subset(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {key: (_subset(actual[key], value) if isinstance(value, dict) else actual[key])
            for key, value in expected.items()}


def test_the_json_report_holds_the_hand_computed_figures(history: Store) -> None:
    found = json.loads(ok("insights --since 30d --json").stdout)
    groups = {(g["by"], g["name"]): g for g in found["groups"]}
    for key, expected in EXPECTED.items():
        assert _subset(groups[key], expected) == expected, key
    assert _subset(groups["all", "all"]["stages"], EXPECTED_STAGES) == EXPECTED_STAGES
    causes = sorted((f["release_id"], f["cause"]) for f in found["failures"])
    assert [cause for _id, cause in causes] == ["rolled back later", "rolled back", "failed"]
    assert found["window_seconds"] == 30 * 86400 and found["failure_window_seconds"] == 86400
    # The window: the last week holds only ledger's fix-forward (R12), three days none.
    recent = json.loads(ok("insights --since 7d --json").stdout)["groups"][0]
    assert (recent["deployments"], recent["attempts"], recent["failures"]) == (1, 1, 0)
    recent = json.loads(ok("insights --since 3d --json").stdout)["groups"][0]
    assert recent["deployments"] == 0 and recent["change_failure_rate"] is None


def test_filters_keep_one_app_or_team(history: Store) -> None:
    found = json.loads(ok("insights --app shop --json").stdout)
    assert {g["name"] for g in found["groups"] if g["by"] == "app"} == {"shop"}
    assert _subset(found["groups"][0], EXPECTED["app", "shop"]) == EXPECTED["app", "shop"]
    team = json.loads(ok("insights --team finance --json").stdout)["groups"][0]
    assert _subset(team, EXPECTED["team", "finance"]) == EXPECTED["team", "finance"]
    assert found["filters"] == {"app": "shop"}


def test_the_table_and_csv_print_the_same_figures(history: Store,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "_width", 160)  # one row per line
    table = ok("insights").stdout
    assert "3h00m / 3h30m (+1 undone)" in table  # time to restore, all
    assert "27% (3/11)" in table and "40% (2/5)" in table
    assert "2h30m / 4h45m" in table  # lead time, all: 9000 s / 17100 s
    assert "approval wait │ 2        │ 2h30m / 4h00m" in table
    rows = {(r["by"], r["name"]): r for r in csv.DictReader(io.StringIO(ok("insights --csv")
                                                                         .stdout))}
    assert rows["all", "all"]["lead_time_median_s"] == "9000"
    assert rows["all", "all"]["change_failure_rate"] == "0.2727"
    assert rows["team", "retail"]["failures"] == "3"
    assert rows["all", "all"]["approval_median_s"] == "9000"


def test_commit_times_come_from_git(history: Store, tmp_path: Path) -> None:
    assert commit_time(str(tmp_path / "shop-src"), "v1") is not None
    assert commit_time(str(tmp_path / "shop-src"), "no-such-ref") is None
    assert commit_time(str(tmp_path / "missing"), "v1") is None
    assert commit_time(str(tmp_path / "shop-src"), "--all") is None


def test_usage_errors(history: Store) -> None:
    result = run("insights --json --csv")
    assert result.exit_code == 1 and "choose one of" in result.output
    result = run("insights --since 2y")
    assert result.exit_code == 1 and "invalid --since" in result.output
