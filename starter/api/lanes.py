"""The receiver's swimlane endpoints: read lanes, and renew or delete one as a token's user.

A lane's TTL notice (DingTalk, webhook) can point here, so keeping a lane is one request from
a phone: ``POST /api/lanes/{name}/renew`` with a bearer token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from catalogue.lanes import lane_owner
from catalogue.store import CatalogueError, Store
from schemas.identities import same_person
from starter.api.deps import ClientDep, Reader, Releaser, StoreDep, refuse
from starter.service.lanes import (
    LaneMissingError,
    delete_lane,
    lane_name,
    lane_status,
    list_lanes,
    renew_lane,
)

router = APIRouter(prefix="/api/lanes", tags=["lanes"])


def _name(text: str) -> str:
    try:
        return lane_name(text)
    except CatalogueError as error:
        raise HTTPException(422, str(error)) from error


def _refused(error: CatalogueError) -> HTTPException:
    """No such running lane → 404; the workflow refused (e.g. it is being deleted) → 409."""
    return HTTPException(404 if isinstance(error, LaneMissingError) else 409, str(error))


@router.get("")
async def lanes(_caller: Reader, client: ClientDep) -> list[dict[str, Any]]:
    """Running swimlanes: stage, apps, expiry (``read``)."""
    return [lane.model_dump(mode="json", exclude={"ledger"})
            for lane in await list_lanes(client)]


@router.get("/{name}")
async def lane(name: str, _caller: Reader, client: ClientDep) -> dict[str, Any]:
    """One lane with its ledger of created resources (``read``)."""
    try:
        return (await lane_status(client, _name(name))).model_dump(mode="json")
    except CatalogueError as error:
        raise _refused(error) from error


@router.post("/{name}/renew")
async def renew(name: str, caller: Releaser, client: ClientDep) -> dict[str, Any]:
    """Reset the lane's idle clock as the token's user (``release``); answers with the new
    expiry."""
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
