"""The receiver's freeze endpoints: list, add and lift freezes and deploy windows, and declare
an incident freeze from a phone (``POST /api/freezes/now``).

Reading needs the ``read`` role; adding a freeze or declaring an incident needs ``approve``
(the people who may let a release through may also hold them back); lifting one needs
``freeze-admin``, a role no token has by default. A rule holds every application with an
environment in its scope: a token limited to some applications (``token create --app`` /
``--team``) adds, declares or lifts only rules whose applications it all covers (403 naming
the others).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from catalogue.store import CatalogueError, Store
from schemas.freezes import FreezeRule, RuleKind
from starter.api.deps import (
    Approver,
    FreezeAdmin,
    Reader,
    StoreDep,
    get_client,
    require_scope,
)
from starter.service import freezes

router = APIRouter(prefix="/api/freezes", tags=["freezes"])


class FreezeBody(BaseModel):
    """A freeze or window in the CLI's words (``slipway freeze add --help``)."""

    scope: str
    kind: RuleKind = RuleKind.FREEZE
    reason: str = ""
    start: str = "now"
    end: str = ""
    rrule: str = ""
    duration: str = ""
    timezone: str = "UTC"


class IncidentBody(BaseModel):
    reason: str
    scope: str = "prod"
    duration: str = ""


async def _client_or_none(request: Request) -> Client | None:
    """Temporal down: the catalogue change stands, running releases are not told. (Called,
    not injected, so a 503 does not refuse the request; tests' overrides still apply.)"""
    provider = request.app.dependency_overrides.get(get_client)
    try:
        found = provider() if provider is not None else await get_client(request)
        return await found if inspect.isawaitable(found) else found  # type: ignore[no-any-return]
    except HTTPException:
        return None


def _shown(rule: FreezeRule) -> dict[str, Any]:
    return {**rule.model_dump(mode="json"), "text": rule.describe()}


@router.get("")
async def freeze_list(_caller: Reader, store: StoreDep) -> list[dict[str, Any]]:
    """Freezes and windows in force now or later (``read``)."""
    return [_shown(rule) for rule in await run_in_threadpool(freezes.list_rules, store)]


@router.post("", status_code=201)
async def freeze_add(body: FreezeBody, caller: Approver, store: StoreDep,
                     request: Request) -> dict[str, Any]:
    """Add a freeze or deploy window (``approve``); 422 says what to fix. The running
    releases of its scope are told (``told``), so one waiting looks again."""
    def add(target: Store) -> FreezeRule:
        rule = freezes.make_rule(body.kind, body.scope, body.reason, start=body.start,
                                 end=body.end, rrule=body.rrule, duration=body.duration,
                                 zone=body.timezone)
        if not caller.scope.everything:
            require_scope(target, request, caller, freezes.scope_apps(target, rule.scope))
        return freezes.add_rule(target, rule, caller.user)
    try:
        stored = await run_in_threadpool(add, store)
    except CatalogueError as error:
        raise HTTPException(422, str(error)) from error
    told = await freezes.tell_changed(await _client_or_none(request), stored)
    return {**_shown(stored), "told": told}


@router.post("/now", status_code=201)
async def freeze_now(body: IncidentBody, caller: Approver, store: StoreDep,
                     request: Request) -> dict[str, Any]:
    """Declare an incident freeze (``approve``): running releases in scope hold at their
    next step."""
    try:
        if not caller.scope.everything:
            apps = await run_in_threadpool(freezes.scope_apps, store, body.scope)
            await run_in_threadpool(require_scope, store, request, caller, apps)
        rule, told = await freezes.declare_incident(
            store, await _client_or_none(request), body.scope, body.reason, caller.user,
            body.duration)
    except CatalogueError as error:
        raise HTTPException(422, str(error)) from error
    return {**_shown(rule), "held": told}


@router.delete("/{rule_id}")
async def freeze_remove(rule_id: int, caller: FreezeAdmin, store: StoreDep,
                        request: Request) -> dict[str, Any]:
    """Lift a freeze or remove a window (``freeze-admin``); waiting releases look again."""
    if not caller.scope.everything:
        apps = await run_in_threadpool(freezes.rule_apps, store, rule_id)
        await run_in_threadpool(require_scope, store, request, caller, apps)
    try:
        removed, woken = await freezes.lift(store, await _client_or_none(request), rule_id,
                                            caller.user)
    except CatalogueError as error:
        raise HTTPException(404, str(error)) from error
    return {**_shown(removed), "woken": woken}
