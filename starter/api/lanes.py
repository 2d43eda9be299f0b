"""The receiver's swimlane endpoints: read lanes, and renew or delete one as a token's user.

A lane's TTL notice (DingTalk, webhook) can point here, so keeping a lane is one request from
a phone: ``POST /api/lanes/{name}/renew`` with a bearer token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from catalogue.store import CatalogueError
from starter.api.deps import ClientDep, current_user
from starter.service.lanes import (
    LaneMissingError,
    delete_lane,
    lane_name,
    lane_status,
    list_lanes,
    renew_lane,
)

router = APIRouter(prefix="/api/lanes", tags=["lanes"])
UserDep = Annotated[str, Depends(current_user)]


def _name(text: str) -> str:
    try:
        return lane_name(text)
    except CatalogueError as error:
        raise HTTPException(422, str(error)) from error


def _refused(error: CatalogueError) -> HTTPException:
    """No such running lane → 404; the workflow refused (e.g. it is being deleted) → 409."""
    return HTTPException(404 if isinstance(error, LaneMissingError) else 409, str(error))


@router.get("")
async def lanes(client: ClientDep) -> list[dict[str, Any]]:
    """Running swimlanes: stage, apps, expiry."""
    return [lane.model_dump(mode="json", exclude={"ledger"})
            for lane in await list_lanes(client)]


@router.get("/{name}")
async def lane(name: str, client: ClientDep) -> dict[str, Any]:
    """One lane with its ledger of created resources."""
    try:
        return (await lane_status(client, _name(name))).model_dump(mode="json")
    except CatalogueError as error:
        raise _refused(error) from error


@router.post("/{name}/renew")
async def renew(name: str, user: UserDep, client: ClientDep) -> dict[str, Any]:
    """Reset the lane's idle clock as the token's user; answers with the new expiry."""
    try:
        status = await renew_lane(client, _name(name), user)
    except CatalogueError as error:
        raise _refused(error) from error
    return {"name": status.name, "stage": status.stage, "expires_at":
            status.expires_at.isoformat(), "renewed_by": user}


@router.delete("/{name}")
async def delete(name: str, user: UserDep, client: ClientDep) -> dict[str, Any]:
    """Tear the lane down now; answers once every resource is removed, newest first."""
    try:
        result = await delete_lane(client, _name(name), user)
    except CatalogueError as error:
        raise _refused(error) from error
    return {"name": result.name, "deleted_by": user,
            "removed": [f"{entry.kind} {entry.key}" for entry in result.removed]}
