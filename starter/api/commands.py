"""``POST /api/commands``: the server runs a command of the ``slipway`` client as the caller.

The client sends the words of its command line (and the content of any file they name); the
server authenticates the bearer token, runs the command in a process of its own as the
token's user (:mod:`starter.api.command_process`), and streams what it prints back as JSON
lines: ``{"out": text}``, ``{"err": text}``, then ``{"exit": status}``. The command's role and
the applications it acts on are checked once its arguments are parsed
(:mod:`starter.service.command_policy`); a refusal is an ``api.refused`` audit event and the
one-line error. A client that goes away (Ctrl-C on ``status --watch``) ends its command: the
process is killed, and anything durable it started (a release) goes on in Temporal.

``GET /api/whoami`` names the token's user, roles and scope (``slipway login`` checks it).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from schemas.settings import Settings
from starter.api.command_process import CommandCall, start_command
from starter.api.deps import bearer, current_caller
from starter.service.identity import Session
from starter.service.tokens import Caller

log = logging.getLogger("slipway.server")
router = APIRouter(tags=["commands"])

# An uploaded file is a policy (YAML/JSON); a command line is a few dozen words.
MAX_FILE_CHARS = 256_000
POLL_SECONDS = 0.5


class CommandBody(BaseModel):
    """A command line of the client: ``argv`` without the program name."""

    argv: list[Annotated[str, Field(max_length=4096)]] = Field(max_length=256)
    columns: int = Field(default=80, ge=20, le=1000)
    terminal: bool = False
    files: dict[int, Annotated[str, Field(max_length=MAX_FILE_CHARS)]] = Field(
        default_factory=dict, max_length=8)


class Identity(BaseModel):
    user: str
    token: str
    roles: list[str]
    scope: str


def _frame(**item: object) -> bytes:
    return (json.dumps(item) + "\n").encode()


async def _frames(call: CommandCall, session: Session,
                  environ: dict[str, str]) -> AsyncIterator[bytes]:
    process, pipe = await run_in_threadpool(start_command, call, session, environ)
    try:
        while True:
            if not await anyio.to_thread.run_sync(pipe.poll, POLL_SECONDS):
                if process.is_alive():
                    continue
                if not pipe.poll():
                    yield _frame(err="error: the command's process ended without a status "
                                     f"(exit code {process.exitcode}); see the server log\n")
                    yield _frame(exit=1)
                    return
            try:
                stream, payload = pipe.recv()
            except EOFError:
                yield _frame(err="error: the command's process went away\n")
                yield _frame(exit=1)
                return
            if stream == "exit":
                yield _frame(exit=payload)
                return
            yield _frame(**{stream: payload})
    finally:
        # The client left (or the command ended): nothing may outlive its request.
        if process.is_alive():
            process.kill()
        pipe.close()
        await anyio.to_thread.run_sync(process.join, 5)


@router.post("/api/commands", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}}}})
async def run_command(
    body: CommandBody,
    request: Request,
    caller: Annotated[Caller, Depends(current_caller)],
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> StreamingResponse:
    """Run a ``slipway`` command as the bearer token's user; stream its output as JSON
    lines. Any valid token may ask: each command checks its own role and scope."""
    session = Session(user=caller.user, token_name=caller.token, token=credentials.credentials,
                      roles=caller.roles, apps=caller.scope.apps, teams=caller.scope.teams)
    call = CommandCall(argv=body.argv, columns=body.columns, terminal=body.terminal,
                       files=body.files, traceparent=request.headers.get("traceparent", ""))
    # Which command, not its arguments: they may carry a reason or a note, never a secret,
    # but a log is not the place for them.
    log.info("%s runs `slipway %s`", caller.user,
             " ".join(word for word in body.argv[:2] if not word.startswith("-")))
    # The command runs on the server's settings and catalogue, whatever its process's
    # environment was when the forkserver started.
    settings: Settings = request.app.state.settings
    environ = {**os.environ, **settings.environment(),
               "SLIPWAY_DATABASE_URL": request.app.state.store.url}
    return StreamingResponse(_frames(call, session, environ),
                             media_type="application/x-ndjson")


@router.get("/api/whoami", response_model=Identity)
async def whoami(caller: Annotated[Caller, Depends(current_caller)]) -> Identity:
    """Who the bearer token acts as, with its roles and scope."""
    return Identity(user=caller.user, token=caller.token, roles=sorted(caller.roles),
                    scope=caller.scope.describe())
