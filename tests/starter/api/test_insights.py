"""``GET /api/insights``: the read role, the token's scope, and the three formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from catalogue.store import Store
from starter.client.main import _download
from starter.service.tokens import create_token
from tests.support.insights_history import (
    EXPECTED,
    history_api,  # noqa: F401  (the `http` fixture)
    )


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}


def test_insights_need_a_reader_and_show_only_its_scope(http: tuple[TestClient, Store]) -> None:
    client, store = http
    assert client.get("/api/insights").status_code == 401
    _, reader = create_token(store, "viewer", roles=["read"])
    _, builder = create_token(store, "ci", roles=["release"])
    _, finance = create_token(store, "auditor", roles=["read"], teams=["finance"])
    assert client.get("/api/insights", headers=bearer(builder)).status_code == 403
    found = client.get("/api/insights", headers=bearer(reader))
    assert found.status_code == 200, found.text
    overall = found.json()["groups"][0]
    assert overall["deployments"] == EXPECTED["all", "all"]["deployments"]
    assert overall["change_failure_rate"] == EXPECTED["all", "all"]["change_failure_rate"]
    scoped = client.get("/api/insights", headers=bearer(finance)).json()
    assert {g["name"] for g in scoped["groups"] if g["by"] == "app"} == {"ledger"}
    refused = client.get("/api/insights?app=shop", headers=bearer(finance))
    assert refused.status_code == 403 and "shop" in refused.json()["detail"]
    bad = client.get("/api/insights?since=forever", headers=bearer(reader))
    assert bad.status_code == 422 and "invalid since" in bad.json()["detail"]


def test_csv_and_html(http: tuple[TestClient, Store]) -> None:
    client, store = http
    _, reader = create_token(store, "viewer", roles=["read"])
    table = client.get("/api/insights?format=csv&app=shop", headers=bearer(reader))
    assert table.headers["content-type"].startswith("text/csv")
    assert table.text.splitlines()[1].startswith("all,all,4,")
    page = client.get("/api/insights?format=html", headers=bearer(reader))
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count('<svg id="') == 3


def test_the_client_saves_the_html_report_itself() -> None:
    path = Path("r.html")
    assert _download(["insights", "--html", "r.html", "--app", "shop"]) == (
        ["insights", "--html", "-", "--app", "shop"], path)
    assert _download(["insights", "--html=r.html"]) == (["insights", "--html=-"], path)
    assert _download(["insights", "--html", "-"]) == (["insights", "--html", "-"], None)
    assert _download(["status", "--html", "x"]) == (["status", "--html", "x"], None)
