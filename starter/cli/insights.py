"""``slipway insights``: DORA figures and release durations from the catalogue, as a table,
JSON, CSV or a self-contained HTML report with charts (definitions: docs/insights.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from schemas.durations import HISTORY_WINDOW
from schemas.insights import GroupInsights, InsightsReport, Spread
from schemas.scopes import TokenScope
from starter.cli.console import command_store, console, fail
from starter.cli.fit import FitTable
from starter.service.identity import current_session
from starter.service.insights import InsightsQuery, insights
from starter.service.insights_report import html_report, span, to_csv
from starter.service.validation import parse_duration

STDOUT = "-"


def insights_command(
    app: Annotated[str, typer.Option(metavar="APP", help="Only this application.")] = "",
    team: Annotated[str, typer.Option(metavar="TEAM", help="Only this team's applications.")] = "",
    env_type: Annotated[str, typer.Option(
        "--env-type", metavar="TYPE", help="Only environments of this type (prod, test…).")] = "",
    since: Annotated[str, typer.Option(
        metavar="DURATION", help="How far back, e.g. 30d or 12h.")] = "30d",
    failure_window: Annotated[str, typer.Option(
        "--failure-window", metavar="DURATION",
        help="A succeeded release followed this soon by a rollback or a fix counts as a "
             "failed change.")] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print one CSV row per group.")] = False,
    html: Annotated[str, typer.Option(
        "--html", metavar="FILE",
        help="Write a self-contained HTML report with charts to FILE (on your machine).")] = "",
) -> None:
    """Deployment frequency, lead time for changes, change failure rate and time to restore,
    for every release and per application, team and environment type; plus how long each
    stage of a release took and how long approvals waited."""
    if sum((as_json, as_csv, bool(html))) > 1:
        fail("choose one of --json, --csv and --html")
    session = current_session()
    if html and html != STDOUT and session is not None:
        # The client turns `--html FILE` into `--html -` and writes the file itself.
        fail("the server writes no file for a caller: run `slipway insights --html FILE` with "
             "the slipway client, which saves the report on your machine")
    with command_store() as store:
        query = InsightsQuery(
            since_seconds=parse_duration(since, "--since", HISTORY_WINDOW),
            failure_window_seconds=parse_duration(failure_window, "--failure-window",
                                                  HISTORY_WINDOW),
            app=app, team=team, env_type=env_type)
        scope = TokenScope(session.apps, session.teams) if session is not None else None
        found = insights(store, query, scope)
    if as_json:
        print(found.model_dump_json(indent=2))
    elif as_csv:
        sys.stdout.write(to_csv(found))
    elif html == STDOUT:
        sys.stdout.write(html_report(found))
    elif html:
        Path(html).write_text(html_report(found), encoding="utf-8")
        console.print(f"wrote {html}", highlight=False)
    else:
        _print(found, since)


CSV_STAGES = ("build", "approval", "rollout", "total")


def _rate(group: GroupInsights) -> str:
    if group.change_failure_rate is None:
        return "-"
    return f"{group.change_failure_rate:.0%} ({group.failures}/{group.attempts})"


def _spread(figure: Spread) -> str:
    return "-" if figure.median is None else f"{span(figure.median)} / {span(figure.p90)}"


def _print(found: InsightsReport, since: str) -> None:
    table = FitTable(f"releases in the last {since}: DORA figures (median / p90)")
    for header in ("group", "deploys", "per week"):
        table.add_column(header)
    for header in ("lead time", "change failure", "time to restore"):
        table.add_column(header, "wrap")
    for group in found.groups:
        label = "all" if group.by == "all" else f"{group.by.replace('_', ' ')} {group.name}"
        restore = _spread(group.restore_time) + (
            f" (+{group.self_restored} undone)" if group.self_restored else "")
        table.add_row(label, str(group.deployments), f"{group.deployments_per_week:g}",
                      _spread(group.lead_time), _rate(group), restore)
    console.print(table)
    overall = found.group("all", "all")
    if overall is None:
        return
    stages = FitTable("how long releases took, by stage (median / p90)")
    for header in ("stage", "releases", "duration"):
        stages.add_column(header)
    for stage in CSV_STAGES:
        figure = overall.stages.get(stage, Spread())
        stages.add_row("approval wait" if stage == "approval" else stage, str(figure.count),
                       _spread(figure))
    console.print(stages)
