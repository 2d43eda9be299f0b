"""FastAPI dependencies of the receiver: the catalogue, the Temporal client, the caller.

The caller's token must carry the route's role and, on a route that names an application
(``{app}`` in its path), have that application in its scope (schemas.scopes); routes that act
on applications another way (lanes, freezes) check with :func:`require_scope`.

Tests override :func:`get_client` with their test server's client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from catalogue.store import CatalogueError, Store, audit
from starter.service.temporal_client import connect
from starter.service.tokens import Caller, caller_for_token, scope_refusal

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


def refuse(store: Store, request: Request, status: int, reason: str, actor: str = "",
            headers: dict[str, str] | None = None) -> HTTPException:
    """Every refused request is an audit event: who (if known), what, why. Never the token."""
    with store.session() as session:
        audit(session, "api.refused", actor=actor, app=request.path_params.get("app", ""),
              env=request.path_params.get("env", ""), method=request.method,
              path=request.url.path, status=status, reason=reason)
        session.commit()
    return HTTPException(status, reason, headers=headers)


def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    store: Annotated[Store, Depends(get_store)],
) -> Caller:
    """The caller behind the bearer token; 401 when it is missing, unknown or revoked."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise refuse(store, request, 401, "missing bearer token", headers=challenge)
    caller = caller_for_token(store, credentials.credentials)
    if caller is None:
        raise refuse(store, request, 401, "invalid or revoked token", headers=challenge)
    return caller


def require_scope(store: Store, request: Request, caller: Caller, apps: list[str]) -> None:
    """403 (an ``api.refused`` audit event) naming the applications of ``apps`` that the
    caller's token does not cover, and its scope. Blocking: call it in a thread."""
    if reason := scope_refusal(store, caller, apps):
        raise refuse(store, request, 403, reason, actor=caller.user)


def require(role: str) -> Callable[..., Caller]:
    """A dependency: the caller, whose token must carry ``role`` (403 naming it if not) and,
    when the path names an application, cover it (403 naming it and the token's scope)."""

    def caller_with_role(
        request: Request, caller: Annotated[Caller, Depends(current_caller)],
        store: Annotated[Store, Depends(get_store)],
    ) -> Caller:
        if role not in caller.roles:
            raise refuse(store, request, 403,
                          f"token {caller.token} of {caller.user} lacks the {role} role "
                          f"(it has {', '.join(sorted(caller.roles)) or 'none'}); ask an "
                          f"admin for `slipway token create {caller.user} --role {role}`",
                          actor=caller.user)
        if "app" in request.path_params:
            require_scope(store, request, caller, [request.path_params["app"]])
        return caller

    return caller_with_role


StoreDep = Annotated[Store, Depends(get_store)]
ClientDep = Annotated[Client, Depends(get_client)]
Reader = Annotated[Caller, Depends(require("read"))]
Releaser = Annotated[Caller, Depends(require("release"))]
Approver = Annotated[Caller, Depends(require("approve"))]
FreezeAdmin = Annotated[Caller, Depends(require("freeze-admin"))]
