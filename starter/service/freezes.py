"""Freezes and deploy windows for the CLI and the receiver: parse what a person typed, store
it, and tell running releases (an incident freeze holds them at their next step; a rule added
or lifted wakes the ones waiting in its scope, which wait on that signal rather than polling).

A rule applies to environments, so to every application with an environment in its scope: a
token limited to some applications adds, declares or lifts only rules whose applications it
all covers (:func:`scope_apps`, :func:`rule_apps`)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from catalogue.freezes import add_rule, apps_under, find_rule, remove_rule, rules
from catalogue.store import CatalogueError, Store
from schemas.durations import FREEZE_SPAN
from schemas.freezes import FreezeNotice, FreezeRule, RuleKind
from starter.service.validation import parse_duration, refusal
from workflows import search
from workflows.release import ReleaseWorkflow

TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


def parse_time(text: str, zone: str, now: datetime | None = None) -> datetime:
    """``now``, ``2026-12-04 18:00`` or ``2026-12-04`` in ``zone``; an ISO time with an
    offset keeps its own."""
    now = now or datetime.now(UTC)
    if text.strip().lower() == "now":
        return now
    with contextlib.suppress(ValueError):
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is not None:
            return moment
    for form in TIME_FORMATS:
        with contextlib.suppress(ValueError):
            return datetime.strptime(text.strip(), form).replace(tzinfo=ZoneInfo(zone))
    raise CatalogueError(f"invalid time {text!r}: use now, YYYY-MM-DD HH:MM (in --tz) or an "
                         "ISO time with an offset")


def make_rule(kind: RuleKind, scope: str, reason: str, *, start: str, end: str = "",
              rrule: str = "", duration: str = "", zone: str = "UTC",
              incident: bool = False) -> FreezeRule:
    """A validated rule from command-line words; CatalogueError says what to fix."""
    try:
        ZoneInfo(zone)
    except (ValueError, KeyError):
        raise CatalogueError(f"unknown time zone {zone!r} (use an IANA name such as "
                             "Asia/Shanghai or UTC)") from None
    if rrule and end:
        raise CatalogueError("a recurring rule takes --duration, not --to")
    if duration and end:
        raise CatalogueError("give --to or --duration, not both")
    starts_at = parse_time(start, zone)
    seconds = parse_duration(duration, "duration", FREEZE_SPAN) if duration else 0
    ends_at = parse_time(end, zone) if end else None
    try:
        if not rrule and seconds:
            ends_at = starts_at + timedelta(seconds=seconds)
            seconds = 0
        return FreezeRule(kind=kind, scope=scope, reason=reason, starts_at=starts_at,
                          ends_at=ends_at, rrule=rrule.upper(), duration_seconds=seconds,
                          timezone=zone, incident=incident)
    except ValidationError as error:
        raise refusal(error) from None
    except OverflowError:
        raise CatalogueError(f"{start} plus {duration} is past the end of time") from None


def scope_apps(store: Store, scope: str) -> list[str]:
    """The applications a rule of ``scope`` would hold: those with an environment there."""
    try:
        probe = FreezeRule(scope=scope, starts_at=datetime.now(UTC))
    except ValidationError as error:
        raise refusal(error) from None
    return apps_under(store, probe)


def rule_apps(store: Store, rule_id: int) -> list[str]:
    """The applications rule ``rule_id`` holds (or lets go); empty when there is no such rule
    (removing it then says so)."""
    try:
        return apps_under(store, find_rule(store, rule_id))
    except CatalogueError:
        return []


def list_rules(store: Store) -> list[FreezeRule]:
    return rules(store)


async def _running_releases(client: Client, query: str = "") -> list[tuple[str, str]]:
    """(workflow id, env) of running releases, from visibility."""
    found = []
    base = "WorkflowType='ReleaseWorkflow' AND ExecutionStatus='Running'"
    async for execution in client.list_workflows(f"{base} AND {query}" if query else base):
        env = execution.typed_search_attributes.get(search.ENV) or ""
        found.append((execution.id, env))
    return found


async def tell_changed(client: Client | None, rule: FreezeRule) -> list[str]:
    """Signal ``freezes_changed`` to the running releases of ``rule``'s scope, so one
    waiting in a freeze or outside a window looks again at once (not only those in stage
    ``frozen``: one may be asking the catalogue right now). Returns the releases told."""
    told: list[str] = []
    if client is None:
        return told
    for workflow_id, env in await _running_releases(client):
        env_type, _, cluster = env.partition("@")
        if rule.applies_to(env_type, cluster):
            with contextlib.suppress(RPCError):  # it just ended
                await client.get_workflow_handle(workflow_id).signal(
                    ReleaseWorkflow.freezes_changed)
                told.append(workflow_id)
    return told


async def add(store: Store, client: Client | None, rule: FreezeRule,
              actor: str) -> tuple[FreezeRule, list[str]]:
    """Store a freeze or window and tell the releases of its scope (a window may open a
    waiting one sooner, a freeze changes what a waiting one shows)."""
    stored = add_rule(store, rule, actor)
    return stored, await tell_changed(client, stored)


async def declare_incident(store: Store, client: Client | None, scope: str, reason: str,
                           actor: str, duration: str = "") -> tuple[FreezeRule, list[str]]:
    """Freeze ``scope`` from now (until lifted, or for ``duration``) and hold the running
    releases there at their next step; return the rule and the releases told."""
    if not reason.strip():
        raise CatalogueError("an incident freeze needs a reason: --reason \"what happened\"")
    rule = add_rule(store, make_rule(RuleKind.FREEZE, scope, reason, start="now",
                                     duration=duration, incident=True), actor)
    told = []
    if client is not None:
        for workflow_id, env in await _running_releases(client):
            env_type, _, cluster = env.partition("@")
            if rule.applies_to(env_type, cluster):
                with contextlib.suppress(RPCError):  # it just ended
                    await client.get_workflow_handle(workflow_id).signal(
                        ReleaseWorkflow.freeze, FreezeNotice(reason=reason, by=actor))
                    told.append(workflow_id)
    return rule, told


async def lift(store: Store, client: Client | None, rule_id: int,
               actor: str) -> tuple[FreezeRule, list[str]]:
    """Remove a rule and wake the releases of its scope so the waiting ones look again."""
    removed = remove_rule(store, rule_id, actor)
    return removed, await tell_changed(client, removed)
