"""``slipway app …`` and ``slipway env …``: the catalogue of applications and environments.

Thin typer + rich layer: parsing and printing only; the rules live in
:mod:`starter.service.catalogue`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from catalogue.environments import is_removed
from catalogue.holds import hold_text
from catalogue.tables import Application, Baseline, Environment
from schemas.durations import APPROVAL_TIMEOUT, STABLE
from schemas.enums import AppCategory, AppState, AppTier, RuntimeKind, Strategy
from schemas.settings import get_settings
from starter.cli.console import catalogue_errors, command_store, console, uploaded
from starter.cli.teardown import Wait, check_retire, tear_down_retired
from starter.service import catalogue, teardown
from starter.service.analysis import load_policy
from starter.service.identity import current_user
from starter.service.validation import format_duration, parse_duration

app_cli = typer.Typer(no_args_is_help=True, help="Register, inspect and retire applications.")
env_cli = typer.Typer(no_args_is_help=True,
                      help="Add, inspect and remove an application's environments.")

AppName = Annotated[str, typer.Argument(help="Application name, e.g. shop.", metavar="APP",
                                        show_default=False)]


def _lb_url(env: Environment) -> str:
    return f"http://{get_settings().lb_bind_address}:{env.lb_port}/"


def _env_label(env: Environment) -> str:
    return f"{env.name} (removed)" if is_removed(env) else env.name


def _replicas(env: Environment) -> str:
    return "- (removed)" if is_removed(env) else str(env.replicas)


def _baseline_text(baseline: Baseline | None) -> str:
    return f"v{baseline.version} {baseline.image}" if baseline else "-"


# ---------------------------------------------------------------- slipway app …


@app_cli.command("register")
def app_register(
    name: Annotated[str, typer.Argument(
        help="Application name: lowercase letters, digits and '-', starting with a letter, "
             "at most 40 characters.", metavar="NAME", show_default=False)],
    category: Annotated[AppCategory, typer.Option(
        help="in-house: developed here (or a modified open-source project); commercial: "
             "third-party software we run, e.g. Grafana; empty: no releases, only reserves "
             "resources.")] = AppCategory.IN_HOUSE,
    tier: Annotated[AppTier, typer.Option(
        help="core: on a critical business path, or middleware others depend on; non-core: "
             "other business services; edge: small internal tools where a failure causes no "
             "outage.")]
        = AppTier.NON_CORE,
    owner: Annotated[list[str] | None, typer.Option(
        "--owner", help="User who owns the application; repeat for several. "
                        "Default: you.", metavar="USER", show_default=False)] = None,
    approver: Annotated[list[str] | None, typer.Option(
        "--approver", help="User who may approve its releases; repeat for several.",
        metavar="USER", show_default=False)] = None,
    team: Annotated[str, typer.Option(
        help="Team that owns it (a lowercase label): API tokens limited to the team "
             "(`token create --team`) act on it. Default: none.", metavar="TEAM",
        show_default=False)] = "",
    source: Annotated[str, typer.Option(
        help="Where builds come from: an existing directory or a git URL "
             "(https://, git@, ssh://, or ending in .git).", metavar="DIR|GITURL",
        show_default=False)] = "",
    description: Annotated[str, typer.Option(
        help="One line saying what the application does.", show_default=False)] = "",
    ready: Annotated[bool, typer.Option(
        "--ready", help="Mark it reviewed at once (state ready) instead of pending_review.")]
        = False,
) -> None:
    """Register a new application. It starts pending_review until `slipway app ready`."""
    actor = current_user()
    with command_store() as store:
        registered = catalogue.register_app(
            store, name, category=category, tier=tier, owners=owner or [actor],
            approvers=approver or [], source=source, description=description, actor=actor,
            team=team,
        )
        if ready:
            registered = catalogue.mark_ready(store, name, actor)
    console.print(f"registered [bold]{registered.name}[/] ({registered.state})", highlight=False)
    if registered.state == AppState.PENDING_REVIEW:
        console.print(f"after review: slipway app ready {name}", highlight=False)


@app_cli.command("ready")
def app_ready(name: AppName) -> None:
    """Mark an application reviewed: pending_review → ready, so it can be released."""
    with command_store() as store:
        marked = catalogue.mark_ready(store, name, current_user())
    console.print(f"{marked.name}: {AppState.PENDING_REVIEW} → {marked.state}", highlight=False)


@app_cli.command("set-team")
def app_set_team(
    name: AppName,
    team: Annotated[str, typer.Argument(
        help="The team that owns it from now on (a lowercase label); \"\" for none.",
        metavar="TEAM", show_default=False)],
) -> None:
    """Change the team that owns an application: tokens limited to the old team no longer
    act on it, tokens limited to the new one do."""
    with command_store() as store:
        before = catalogue.show_app(store, name).app.team
        moved = catalogue.set_team(store, name, team, current_user())
    console.print(f"{moved.name}: team {before or '-'} → {moved.team or '-'}", highlight=False)


@app_cli.command("list")
def app_list() -> None:
    """List every application with its state, tier, category and environments."""
    with command_store() as store:
        overviews = catalogue.list_apps(store)
    if not overviews:
        console.print("no applications yet: slipway app register NAME", highlight=False)
        return
    table = Table()
    table.add_column("name", no_wrap=True)
    for header in ("state", "tier", "category", "envs"):
        table.add_column(header)
    for overview in overviews:
        envs = ", ".join(_env_label(item.env) for item in overview.envs) or "-"
        table.add_row(overview.app.name, overview.app.state, overview.app.tier,
                      overview.app.category, envs)
    console.print(table)


@app_cli.command("show")
def app_show(name: AppName) -> None:
    """Show one application, its environments and the baseline running in each."""
    with command_store() as store:
        overview = catalogue.show_app(store, name)
    _print_app(overview.app)
    if not overview.envs:
        console.print(f"no environments: slipway env add {name} ENV_TYPE", highlight=False)
        return
    table = Table(title="environments")
    table.add_column("env", no_wrap=True)
    for header in ("runtime", "replicas", "load balancer", "baseline"):
        table.add_column(header)
    for item in overview.envs:
        table.add_row(_env_label(item.env), item.env.runtime, _replicas(item.env),
                      _lb_url(item.env), _baseline_text(item.latest))
    console.print(table)


@app_cli.command("retire")
def app_retire(name: AppName, wait: Wait = True) -> None:
    """Retire an application one step: ready/online → retiring → offline.

    An application still pending review goes straight to offline. Offline is final.

    The step to offline tears down every environment, as `slipway env remove` does; it is
    refused, with nothing changed, while a release of one of them runs.
    """
    with command_store() as store:
        before = catalogue.show_app(store, name).app.state
        envs = teardown.envs_going_offline(store, name)
        if envs:
            check_retire(name, envs)
        retired = catalogue.retire_app(store, name, current_user())
    console.print(f"{retired.name}: {before} → {retired.state}", highlight=False)
    if retired.state == AppState.RETIRING:
        console.print(f"to take it offline: slipway app retire {name}", highlight=False)
    if retired.state == AppState.OFFLINE and envs:
        with catalogue_errors():
            tear_down_retired(retired.name, envs, wait)


def _print_app(app: Application) -> None:
    rows = [
        ("name", app.name), ("state", app.state), ("category", app.category),
        ("tier", app.tier), ("team", app.team or "-"),
        ("owners", ", ".join(app.owners) or "-"),
        ("approvers", ", ".join(app.approvers) or "-"), ("source", app.source or "-"),
        ("description", app.description or "-"),
        ("registered", app.created_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()),
    ]
    _print_fields(rows)


def _print_fields(rows: list[tuple[str, str]]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, str(value))
    console.print(grid)


# ---------------------------------------------------------------- slipway env …


@env_cli.command("add")
def env_add(
    app: AppName,
    env_type: Annotated[str, typer.Argument(
        help="Environment type: a lowercase label such as dev, test, staging or prod.",
        metavar="ENV_TYPE", show_default=False)],
    cluster: Annotated[str, typer.Option(
        help="Cluster to run on, one of those configured with SLIPWAY_CLUSTERS.")] = "local",
    replicas: Annotated[int, typer.Option(help="Number of instances, 1 to 24.")] = 1,
    cpu: Annotated[str, typer.Option(
        help="CPU limit per instance: cores like 0.5 or millicores like 500m. Default: none.",
        show_default=False)] = "",
    memory: Annotated[str, typer.Option(
        help="Memory limit per instance, like 256Mi or 1Gi. Default: none.",
        show_default=False)] = "",
    port: Annotated[list[int] | None, typer.Option(
        "--port", help="Container port the service listens on; repeat for several. "
                       "Default: 8080.", metavar="PORT", show_default=False)] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", help="Environment variable for the instances as KEY=VALUE; repeat for several.",
        metavar="KEY=VALUE", show_default=False)] = None,
    runtime: Annotated[RuntimeKind | None, typer.Option(
        help="Where instances run: docker or kubernetes (default: the cluster's runtime).",
        show_default=False)] = None,
    namespace: Annotated[str, typer.Option(help="Namespace the instances belong to.")]
        = "default",
    health_path: Annotated[str, typer.Option(
        help="HTTP path that answers 2xx when an instance is healthy.")] = "/healthz",
    strategy: Annotated[str | None, typer.Option(
        metavar="gray|rolling|recreate", show_default=False,
        help="How releases roll out. gray: the new version beside the old, step by step, "
             "waiting until stable; rolling: replace replicas in batches; recreate: drain all, "
             "stop, start, enable (apps that cannot run two versions). Default: gray for "
             "prod, recreate otherwise.")] = None,
    steps: Annotated[str | None, typer.Option(
        "--steps", metavar="STEPS", show_default=False,
        help="gray only: comma-separated steps, each a replica count (1), a percentage (50%) "
             "or gate (wait for `slipway promote`); the last must be 100% or the replica "
             "count. Default: 1,50%,100%.")] = None,
    stable: Annotated[str, typer.Option(
        "--stable", metavar="DURATION",
        help="gray/rolling: how long each step must stay healthy (checked throughout) "
             "before the next; recreate with --analysis: how long the new version is "
             "judged once it serves. Seconds, or with s/m/h/d; 0 skips the wait (and is "
             "refused with --analysis).")] = "60",
    batch_size: Annotated[int, typer.Option(
        help="rolling: replicas replaced per batch, 1 to --replicas.")] = 1,
    approval: Annotated[str, typer.Option(
        metavar="auto|required|none",
        help="auto: releases of core apps in prod wait for an approver (rollbacks to a "
             "recent baseline do not); required: every release waits; none: never. Whatever "
             "the policy, a rollback to an older baseline and break glass wait for one.")
    ] = "auto",
    approval_timeout: Annotated[str, typer.Option(
        metavar="DURATION",
        help="How long a release waits for approval before it expires (at least 60s): "
             "seconds, or with s/m/h/d.")] = "24h",
    analysis_file: Annotated[Path | None, typer.Option(
        "--analysis", metavar="FILE", show_default=False,
        help="Canary-analysis policy (YAML or JSON) judging every stable wait (recreate: "
             "the new version once it serves); needs --stable above 0; see `slipway "
             "analysis set --help`.")] = None,
) -> None:
    """Add an environment (ENV_TYPE@CLUSTER) to an application.

    It gets its own load-balancer port; nothing is deployed until its first release.
    """
    settings = get_settings()
    with command_store() as store:
        added = catalogue.add_env(
            store, app, env_type, cluster=cluster, replicas=replicas, cpu=cpu, memory=memory,
            ports=port or [], env_vars=env or [], runtime=runtime, namespace=namespace,
            health_path=health_path, settings=settings, actor=current_user(),
            strategy=strategy, gray_steps=steps.split(",") if steps is not None else None,
            stable_seconds=parse_duration(stable, "--stable", STABLE), batch_size=batch_size,
            approval=approval,
            approval_timeout_seconds=parse_duration(approval_timeout, "--approval-timeout",
                                                    APPROVAL_TIMEOUT),
            analysis=load_policy(uploaded(analysis_file)) if analysis_file else None,
        )
    console.print(f"added {app} {added.name} ({_rollout_text(added)}), load balancer "
                  f"{_lb_url(added)}", highlight=False)


def _rollout_text(env: Environment) -> str:
    """One line of rollout policy, e.g. ``gray 1,50%,100%, stable 60s, approval auto``."""
    how = str(env.strategy)
    if env.strategy == Strategy.GRAY:
        how += f" {','.join(env.gray_steps)}, stable {format_duration(env.stable_seconds)}"
    elif env.strategy == Strategy.ROLLING:
        how += f" by {env.batch_size}, stable {format_duration(env.stable_seconds)}"
    return f"{how}, approval {env.approval}"


@env_cli.command("list")
def env_list(app: AppName) -> None:
    """List an application's environments with their resources and current baseline."""
    with command_store() as store:
        overviews = catalogue.list_envs(store, app)
    if not overviews:
        console.print(f"{app} has no environments: slipway env add {app} ENV_TYPE",
                      highlight=False)
        return
    table = Table()
    # Names are what people copy into the next command: never cut them short.
    table.add_column("env", no_wrap=True)
    for header in ("replicas", "cpu", "memory", "ports", "lb port", "baseline"):
        table.add_column(header)
    for item in overviews:
        table.add_row(_env_label(item.env), _replicas(item.env), item.env.cpu or "-",
                      item.env.memory or "-", ",".join(map(str, item.env.ports)),
                      str(item.env.lb_port), _baseline_text(item.latest))
    console.print(table)


@env_cli.command("show")
def env_show(
    app: AppName,
    env: Annotated[str, typer.Argument(
        help="Environment as TYPE@CLUSTER, or just TYPE when only one cluster has it.",
        metavar="ENV", show_default=False)],
) -> None:
    """Show one environment: its resources and every baseline, newest first."""
    with command_store() as store:
        detail = catalogue.show_env(store, app, env)
    found = detail.env
    env_vars = " ".join(f"{key}=…" for key in sorted(found.env_vars)) or "-"
    _print_fields([
        ("app", detail.app.name), ("env", found.name), ("runtime", found.runtime),
        ("namespace", found.namespace), ("replicas", _replicas(found)),
        ("cpu", found.cpu or "-"), ("memory", found.memory or "-"),
        ("ports", ",".join(map(str, found.ports))), ("env vars", env_vars),
        ("health path", found.health_path), ("strategy", found.strategy),
        ("gray steps", ",".join(found.gray_steps)),
        ("stable", format_duration(found.stable_seconds)),
        ("batch size", str(found.batch_size)), ("approval", found.approval),
        ("approval timeout", format_duration(found.approval_timeout_seconds)),
        ("analysis", ", ".join(f"{m['name']} ({m.get('mode', 'enforcing')})"
                               for m in found.analysis.get("metrics", [])) or "-"),
        ("load balancer", _lb_url(found)),
        ("automatic releases", hold_text(found) or "not held"),
    ])
    if not detail.baselines:
        console.print(f"no baselines yet: nothing has been released to {found.name}",
                      highlight=False)
        return
    table = Table("version", "image", "digest", "replicas", "cpu", "memory", "created",
                  title="baselines")
    for baseline in detail.baselines:
        version = f"v{baseline.version}"
        if baseline.rolled_back_from is not None:
            version += f" (rollback from v{baseline.rolled_back_from})"
        table.add_row(version, baseline.image, baseline.digest[:19] or "-",
                      str(baseline.replicas), baseline.cpu or "-", baseline.memory or "-",
                      baseline.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)
