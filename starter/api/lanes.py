"""The receiver's swimlane endpoints: read lanes, and renew or delete one as a token's user.

A lane's TTL notice (DingTalk, webhook) can point here, so keeping a lane is one request from
a phone: ``POST /api/lanes/{name}/renew`` with a bearer token.

A lane spans applications: a token limited to some (``token create --app/--team``) sees,
renews and deletes only the lanes whose every application it covers (403 naming the others).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from catalogue.lanes import lane_owner
from catalogue.scopes import teams_of
from catalogue.store import CatalogueError, Store
from schemas.identities import same_person
from starter.api.deps import ClientDep, Reader, Releaser, StoreDep, refuse, require_scope
from starter.service.lanes import (
    LaneMissingError,
    delete_lane,
    lane_name,
    lane_status,
    list_lanes,
    renew_lane,
)
from starter.service.tokens import Caller

router = APIRouter(prefix="/api/lanes", tags=["lanes"])


def _name(text: str) -> str:
    try:
        return lane_name(text)
    except CatalogueError as error:
        raise HTTPException(422, str(error)) from error


def _refused(error: CatalogueError) -> HTTPException:
    """No such running lane → 404; the workflow refused (e.g. it is being deleted) → 409."""
    return HTTPException(404 if isinstance(error, LaneMissingError) else 409, str(error))


async def _check_scope(name: str, caller: Caller, request: Request, store: Store,
                       client: ClientDep) -> None:
    """403 unless the caller's token covers every application of lane ``name`` (no look-up
    for a token limited to none)."""
    if caller.scope.everything:
        return
    try:
        status = await lane_status(client, name)
    except CatalogueError as error:
        raise _refused(error) from error
    await run_in_threadpool(require_scope, store, request, caller, status.apps)


@router.get("")
async def lanes(caller: Reader, store: StoreDep, client: ClientDep) -> list[dict[str, Any]]:
    """Running swimlanes: stage, apps, expiry (``read``); those the token's scope covers."""
    found = await list_lanes(client)
    if not caller.scope.everything:
        teams = await run_in_threadpool(teams_of, store,
                                        [app for lane in found for app in lane.apps])
        found = [lane for lane in found
                 if all(caller.scope.covers(app, teams[app]) for app in lane.apps)]
    return [lane.model_dump(mode="json", exclude={"ledger"}) for lane in found]


@router.get("/{name}")
async def lane(name: str, caller: Reader, request: Request, store: StoreDep,
               client: ClientDep) -> dict[str, Any]:
    """One lane with its ledger of created resources (``read``)."""
    try:
        status = await lane_status(client, _name(name))
    except CatalogueError as error:
        raise _refused(error) from error
    await run_in_threadpool(require_scope, store, request, caller, status.apps)
    return status.model_dump(mode="json")


@router.post("/{name}/renew")
async def renew(name: str, caller: Releaser, request: Request, store: StoreDep,
                client: ClientDep) -> dict[str, Any]:
    """Reset the lane's idle clock as the token's user (``release``); answers with the new
    expiry."""
    await _check_scope(_name(name), caller, request, store, client)
    user = caller.user
    try:
        status = await renew_lane(client, _name(name), user)
    except CatalogueError as error:
        raise _refused(error) from error
    return {"name": status.name, "stage": status.stage, "expires_at":
            status.expires_at.isoformat(), "renewed_by": user}


@router.delete("/{name}")
async def delete(name: str, caller: Releaser, request: Request, store: StoreDep,
                 client: ClientDep) -> dict[str, Any]:
    """Tear the lane down now, as its owner or with the ``lane-admin`` role; answers once
    every resource is removed, newest first."""
    lane_name_ = _name(name)
    await _check_scope(lane_name_, caller, request, store, client)
    owner = await run_in_threadpool(lane_owner, store, lane_name_)
    if "lane-admin" not in caller.roles and not same_person(caller.user, owner):
        raise await run_in_threadpool(_not_owner, store, request, caller.user, lane_name_,
                                      owner)
    user = caller.user
    try:
        result = await delete_lane(client, lane_name_, user)
    except CatalogueError as error:
        raise _refused(error) from error
    return {"name": result.name, "deleted_by": user,
            "removed": [f"{entry.kind} {entry.key}" for entry in result.removed]}


def _not_owner(store: Store, request: Request, user: str, name: str,
               owner: str) -> HTTPException:
    return refuse(store, request, 403,
                  f"lane {name} belongs to {owner or 'nobody on record'}: only its owner or a "
                  "token with the lane-admin role deletes it", actor=user)
