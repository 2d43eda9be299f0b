"""FastAPI dependencies of the receiver: the catalogue, the Temporal client, the caller.

Tests override :func:`get_client` with their test server's client.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from catalogue.store import CatalogueError, Store
from starter.service.temporal_client import connect
from starter.service.tokens import user_for_token

bearer = HTTPBearer(auto_error=False, description="API token from `slipway token create`")


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def get_client(request: Request) -> Client:
    """The Temporal client, connected on first use; tests override this dependency."""
    state = request.app.state
    if getattr(state, "client", None) is None:
        try:
            state.client = await connect(state.settings)
        except CatalogueError as error:
            raise HTTPException(503, str(error)) from error
    return state.client  # type: ignore[no-any-return]


def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    store: Annotated[Store, Depends(get_store)],
) -> str:
    """The user behind the bearer token; 401 when it is missing, unknown or revoked."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers=challenge)
    user = user_for_token(store, credentials.credentials)
    if user is None:
        raise HTTPException(401, "invalid or revoked token", headers=challenge)
    return user


StoreDep = Annotated[Store, Depends(get_store)]
ClientDep = Annotated[Client, Depends(get_client)]
