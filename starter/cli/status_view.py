"""What ``slipway status`` shows: one release's state as a rich renderable.

A pure function of the status query's answer, so ``status`` (once) and ``status --watch``
(refreshed every second inside ``rich.live.Live``) print exactly the same view, and tests
render it without Temporal.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from schemas.models import ReleaseStatus
from starter.cli.analysis import measurement_table
from starter.cli.fit import FitTable
from starter.service.releases import PendingActivity, ServerView

EVENTS_SHOWN = 8

# Colour of the workflow's execution status and of the release's stage.
_EXECUTION_STYLE = {"running": "cyan", "completed": "green", "failed": "red",
                    "canceled": "yellow", "terminated": "red", "timed_out": "red"}
# cleaning_up: the outcome is decided (a fast rollback's users are back on the old version);
# the version rolled back is being removed.
_STAGE_STYLE = {"succeeded": "green", "cleaning_up": "green", "rolled_back": "yellow",
                "failed": "red", "rejected": "yellow", "approval_expired": "yellow"}


def render_status(title: str, execution: str, status: ReleaseStatus | None,
                  link: str, events: int = EVENTS_SHOWN, server: ServerView | None = None,
                  record: str = "") -> RenderableType:
    """Header (app@env, strategy, stage, step, pause / what it waits for), versions with
    desired/ready replicas and traffic, the pending activities with what their latest
    heartbeat says (``server``), the last ``events`` events, and the Web UI link."""
    parts: list[RenderableType] = [_header(title, execution, status)]
    if status is not None:
        waiting = _waiting(status)
        if waiting is not None:
            parts.append(waiting)
        if status.versions:
            parts.append(_versions(status))
        if status.wait_ends_at is not None and status.stage == "waiting_stable":
            left = max(0.0, (status.wait_ends_at - datetime.now(UTC)).total_seconds())
            parts.append(Text(f"stable wait ends in {left:.0f}s (at "
                              f"{status.wait_ends_at:%H:%M:%S} UTC)", style="cyan"))
        parts.extend(_pending(server))
        if status.analysis:
            parts.append(_analysis(status))
        if status.events:
            parts.append(_events(status, events))
    else:
        parts.extend(_server_view(execution, server, record))
    parts.append(Text(f"Temporal UI: {link}", style="dim"))
    return Group(*parts)


def _header(title: str, execution: str, status: ReleaseStatus | None) -> Text:
    header = Text()
    header.append(title, style="bold")
    if status is not None:
        if status.to_version:
            header.append(f"  v{status.from_version} → v{status.to_version}")
        if status.strategy:
            header.append(f"  {status.strategy}")
        header.append("  stage ")
        header.append(status.stage, style=f"bold {_STAGE_STYLE.get(status.stage, 'cyan')}")
        if status.steps:
            header.append(f"  step {status.step}/{status.steps}")
    header.append("  workflow ")
    header.append(execution, style=_EXECUTION_STYLE.get(execution, ""))
    if status is not None and status.image:
        header.append(f"\nimage {status.image}", style="dim")
    return header


def _waiting(status: ReleaseStatus) -> Text | None:
    """The line that tells a person the release needs them, and with which command."""
    where = f"{status.app} {status.env}"
    if status.paused:
        return Text(f"⏸ paused: continue with `slipway resume {where}`", style="bold yellow")
    if status.awaiting == "approval":
        approvers = ", ".join(status.approvers) or "nobody (add approvers to the app)"
        by = f" (requested by {status.requested_by})" if status.requested_by else ""
        return Text(f"⏳ awaiting approval from {approvers}{by}: `slipway approve {where} "
                    f"--as USER` or `slipway reject …`", style="bold yellow")
    if status.awaiting == "promote":
        return Text(f"⏳ awaiting promote at a gate: `slipway promote {where}`",
                    style="bold yellow")
    if status.awaiting:
        return Text(f"⏳ awaiting {status.awaiting}", style="bold yellow")
    return None


def _versions(status: ReleaseStatus) -> Table:
    table = Table(title="versions", title_justify="left")
    table.add_column("version", no_wrap=True)
    for header in ("desired", "ready", "traffic"):
        table.add_column(header, justify="right")
    for version in sorted(status.versions, key=lambda v: v.version):
        name = f"v{version.version}"
        if version.version == status.to_version and status.to_version:
            name += " (new)"
        ready_style = "green" if version.ready >= version.desired else "yellow"
        table.add_row(name, str(version.desired),
                      Text(str(version.ready), style=ready_style),
                      f"{version.traffic_percent:.0f}%")
    return table


def _analysis(status: ReleaseStatus) -> FitTable:
    """The latest measurement of each metric (``release show`` prints them all)."""
    latest = {item.metric: item for item in status.analysis}
    return measurement_table(list(latest.values()), "canary analysis (latest per metric)",
                             title_justify="left")


def _events(status: ReleaseStatus, count: int) -> Group:
    shown = status.events[-count:]
    hidden = len(status.events) - len(shown)
    # A line of its own: a grid's title would wrap to the width of the grid.
    title = "events" + (f" (last {len(shown)} of {len(status.events)})" if hidden else "")
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    # Wraps between words; only a word wider than the screen (an image ref) folds.
    table.add_column(overflow="fold")
    for event in shown:
        table.add_row(f"{event.at:%H:%M:%S}", event.message)
    return Group(Text(title, style="italic"), table)


def _server_view(execution: str, server: ServerView | None,
                 record: str) -> list[RenderableType]:
    """No worker answered: say why, and show what the server and the catalogue know."""
    parts: list[RenderableType] = []
    if server is not None and not server.workers_polling and execution == "running":
        parts.append(Text(f"no worker is polling task queue {server.task_queue!r}: the release "
                          "waits where it is, nothing is lost; start one with `slipway up`",
                          style="bold yellow"))
    elif execution == "running":
        parts.append(Text("no progress available: the worker did not answer the status query "
                          "in time", style="yellow"))
    else:
        parts.append(Text("no progress available (the workflow has ended and no worker "
                          "answered the status query)", style="dim"))
    parts.extend(_pending(server))
    if record:
        parts.append(Text(f"catalogue: {record}", style="dim"))
    return parts


def pending_line(item: PendingActivity, now: datetime | None = None) -> str:
    """One pending activity in one line: state, attempt, last failure, and what its latest
    heartbeat says (with its age when ``now`` is given). ``release --wait`` prints the same."""
    line = f"pending activity {item.name}: {item.state}, attempt {item.attempt}"
    if item.last_failure:
        line += f", last failure: {item.last_failure}"
    if item.detail:
        line += f" — {item.detail}"
        if now is not None and item.last_heartbeat is not None:
            age = max(0.0, (now - item.last_heartbeat).total_seconds())
            line += f" ({age:.0f}s ago)"
    return line


def _pending(server: ServerView | None) -> list[RenderableType]:
    """The release's pending activities (at most a few) as the server last heard of them."""
    if server is None:
        return []
    now = datetime.now(UTC)
    parts: list[RenderableType] = [Text(pending_line(item, now)) for item in server.pending]
    if server.more_pending:
        parts.append(Text(f"… and {server.more_pending} more pending activities", style="dim"))
    return parts
