"""``slipway analysis``: an environment's canary-analysis policy, and running it on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import JustifyMethod

from schemas.analysis import Measurement, Verdict
from schemas.durations import ANALYSIS_WINDOW
from schemas.settings import get_settings
from starter.cli.console import command_store, console, uploaded
from starter.cli.fit import FitTable
from starter.service import analysis
from starter.service.identity import current_user
from starter.service.validation import parse_duration

analysis_cli = typer.Typer(no_args_is_help=True)

AppArg = Annotated[str, typer.Argument(help="Application name.", show_default=False)]
EnvArg = Annotated[str, typer.Argument(
    help="Environment as TYPE@CLUSTER, or just TYPE when only one cluster has it.",
    metavar="ENV", show_default=False)]

VERDICT_STYLE = {Verdict.PASSED: "green", Verdict.FAILED: "red",
                 Verdict.INCONCLUSIVE: "yellow", Verdict.ERROR: "magenta"}


@analysis_cli.command("set")
def analysis_set(
    app: AppArg, env: EnvArg,
    policy_file: Annotated[Path, typer.Argument(
        metavar="FILE", show_default=False,
        help="YAML or JSON: metrics: [{name, provider, query, max/min/max_ratio/"
             "max_increase, interval_seconds, min_sample, failure_limit, "
             "consecutive_error_limit, mode}]. See docs/analysis.md.")],
) -> None:
    """Judge every stable wait of ENV's releases by this policy, checked first (Prometheus
    parses every query; a web metric's host must be on SLIPWAY_ANALYSIS_WEB_HOSTS, default
    loopback, and never a link-local or cloud metadata address)."""
    with command_store() as store:
        policy = analysis.load_policy(uploaded(policy_file))
        found = analysis.set_policy(store, app, env, policy, settings=get_settings(),
                                    actor=current_user())
    console.print(f"{app} {found.name}: every stable wait is judged by "
                  f"{', '.join(m.name for m in policy.metrics)}", highlight=False)


@analysis_cli.command("clear")
def analysis_clear(app: AppArg, env: EnvArg) -> None:
    """Remove ENV's policy: stable waits check health only."""
    with command_store() as store:
        found = analysis.set_policy(store, app, env, None, settings=get_settings(),
                                    actor=current_user())
    console.print(f"{app} {found.name}: no canary analysis; stable waits check health only",
                  highlight=False)


@analysis_cli.command("show")
def analysis_show(app: AppArg, env: EnvArg) -> None:
    """Print ENV's policy as YAML."""
    with command_store() as store:
        found, policy = analysis.policy_for(store, app, env)
    if policy is None:
        console.print(f"{app} {found.name} has no analysis policy: slipway analysis set "
                      f"{app} {found.name} FILE", highlight=False)
        return
    console.print(analysis.policy_text(policy), highlight=False, markup=False)


@analysis_cli.command("run")
def analysis_run(
    app: AppArg, env: EnvArg,
    window: Annotated[str, typer.Option(
        metavar="DURATION", help="How long to watch the traffic: seconds, or with s/m.")]
        = "10s",
) -> None:
    """Measure the policy against what runs now and print the table, without releasing.

    While a release runs, its new version is the canary and the old one the baseline.
    Exits 1 when an enforcing or advisory metric fails.
    """
    with command_store() as store:
        seconds = parse_duration(window, "--window", ANALYSIS_WINDOW)
        measurements = analysis.run_policy(store, app, env, settings=get_settings(),
                                           window_seconds=seconds)
    console.print(measurement_table(measurements, title=f"{app} {env}, {seconds}s window"))
    if any(m.verdict == Verdict.FAILED and m.mode != "dry-run" for m in measurements):
        raise typer.Exit(1)


def release_show(
    app: AppArg, env: EnvArg,
    release_id: Annotated[int | None, typer.Option(
        "--id", metavar="N", show_default=False,
        help="Release number (see `release history`). Default: the latest.")] = None,
) -> None:
    """Show one release of APP on ENV and the canary analysis of every step."""
    with command_store() as store:
        item, measurements = analysis.release_with_analysis(store, app, env, release_id)
    versions = f"v{item.from_version} → v{item.to_version}"
    console.print(f"release {item.id} of {app} {env}: {item.state}, {versions}, "
                  f"{item.image or '-'}" + (f"; {item.error}" if item.error else ""),
                  highlight=False)
    if not measurements:
        console.print("no canary analysis measured in this release", highlight=False)
        return
    console.print(measurement_table(measurements))


def measurement_table(measurements: list[Measurement], title: str | None = None,
                      title_justify: JustifyMethod = "center") -> FitTable:
    """One row per measurement; ``why`` names the condition that held or broke (below the
    table, marked on the verdict, when the terminal is too narrow for it)."""
    table = FitTable(title, title_justify=title_justify, notes_at="verdict")
    for header in ("step", "at"):
        table.add_column(header)
    table.add_column("metric", "wrap")  # the mode goes under the name when it must
    for header in ("value", "baseline", "sample", "verdict"):
        table.add_column(header)
    table.add_column("why", "text")
    for item in measurements:
        style = VERDICT_STYLE.get(item.verdict, "")
        metric = item.metric if item.mode == "enforcing" else f"{item.metric} ({item.mode})"
        table.add_row(str(item.step or "-"), item.at.strftime("%H:%M:%S"), metric,
                      _figure(item.value), _figure(item.baseline),
                      "-" if item.sample is None else str(item.sample),
                      f"[{style}]{item.verdict}[/{style}]", item.detail)
    return table


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
