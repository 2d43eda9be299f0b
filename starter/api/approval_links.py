"""Approval links: where the approve/reject links of an approval notification land.

A link names one release run, one approver and a decision (signed with the link secret, so
the page shows nothing forged). It is **not** a credential: a chat notification carries
every approver's links to the whole group, the requester included. So:

* ``GET /approval/{link}`` shows what the link does and a form asking for the approver's API
  token; nothing is decided (chat clients and mail scanners open links to preview them).
* ``POST /approval/{link}`` decides only when it carries an API token (form field ``token``,
  or ``Authorization: Bearer``) that is active, has the ``approve`` role and belongs to the
  link's approver, and whose scope covers the link's application (``token create --app`` /
  ``--team``). Anyone else — another user's token, or none — is refused with the reason,
  and nothing is sent to the release (the refusal is an ``api.refused`` audit event, without
  the link or the token). Accepted, the receiver signs the same proof ``slipway approve``
  does (door ``link``), bound to the link's run and what it carries, and sends the Update to
  that run: the workflow checks the approver and four eyes, the worker the proof.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from catalogue.store import CatalogueError, Store, audit
from schemas.approvals import LinkClaims, read_link
from schemas.models import ApprovalInput
from schemas.settings import Settings
from starter.api.deps import ClientDep, StoreDep
from starter.service.controls import send_update, sign_approval
from starter.service.tokens import Caller, caller_for_token, scope_refusal

router = APIRouter(prefix="/approval", tags=["approval links"])
log = logging.getLogger("slipway.receiver")

_LINK_IN_PATH = re.compile(r"/approval/[^/?\s\"]+")
REDACTED_PATH = "/approval/<redacted>"


class RedactApprovalLinks(logging.Filter):
    """Access logs name the path: log approval links redacted (they name who approves what,
    and proofs of old versions were credentials)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_LINK_IN_PATH.sub(REDACTED_PATH, arg)
                                if isinstance(arg, str) else arg for arg in record.args)
        return True


def redact_access_logs() -> None:
    """Install the redaction on uvicorn's access logger (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(item, RedactApprovalLinks) for item in access.filters):
        access.addFilter(RedactApprovalLinks())


PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Slipway: {title}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 2em auto">
<h2>{title}</h2><p>{body}</p>{form}</body></html>"""


def _page(status: int, title: str, body: str, form: str = "",
          headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=html.escape(body),
                                    form=form), status_code=status, headers=headers)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _target(request: Request, link: str) -> tuple[LinkClaims, str, str] | None:
    """(claims, app, env) of a link this deployment made, else None."""
    settings = _settings(request)
    claims = read_link(link, settings.credential(settings.approval_link_credential))
    if claims is None:
        return None
    kind, _, rest = claims.release.partition(":")
    app, _, env = rest.partition(":")
    if kind != "release" or not app or not env or not claims.run:
        return None
    return claims, app, env


def _malformed() -> HTMLResponse:
    return _page(400, "Not an approval link",
                 "This link is damaged, not a Slipway approval link, or from before the link "
                 "secret changed; use the link from the latest notification, or `slipway "
                 "approve APP ENV`.")


def _form(claims: LinkClaims) -> str:
    user, decision = html.escape(claims.user), html.escape(claims.decision)
    return (f'<form method="post"><p><label>{user}\'s API token<br>'
            '<input type="password" name="token" autocomplete="off" required '
            'style="width: 100%"></label></p>'
            f'<button type="submit" style="font-size: 1.2em">{decision} as {user}</button>'
            "</form>")


@router.get("/{link}", response_class=HTMLResponse)
async def show_link(link: str, request: Request) -> HTMLResponse:
    """What the link will do, with the form (the approver's token) that does it."""
    target = _target(request, link)
    if target is None:
        return _malformed()
    claims, app, env = target
    return _page(200, f"{claims.decision} the release of {app} on {env}?",
                 f"This link is {claims.user}'s: it {claims.decision}s the release of {app} "
                 f"on {env} it was sent for, as {claims.user}, once {claims.user} signs in "
                 f"with their own API token (an admin creates one with `slipway token create "
                 f"{claims.user} --role approve`). Nobody else can use it.", _form(claims))


async def _presented_token(request: Request) -> str:
    """The API token the POST carries: ``Authorization: Bearer``, else the form's (or a JSON
    body's) ``token`` field."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    body = await request.body()
    if not body:
        return ""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            payload: Any = json.loads(body)
        except ValueError:
            return ""
        token = payload.get("token", "") if isinstance(payload, dict) else ""
        return token.strip() if isinstance(token, str) else ""
    values = parse_qs(body.decode("utf-8", errors="replace")).get("token", [""])
    return values[0].strip()


def _refused(store: Store, request: Request, status: int, reason: str, app: str, env: str,
             actor: str = "") -> None:
    """An ``api.refused`` audit event: who (if known), what, why; never the link or a token."""
    with store.session() as session:
        audit(session, "api.refused", actor=actor, app=app, env=env, method=request.method,
              path=REDACTED_PATH, status=status, reason=reason)
        session.commit()


def _who(store: Store, token: str, claims: LinkClaims,
         app: str) -> tuple[Caller | None, int, str]:
    """The link's approver behind ``token`` (whose scope covers ``app``), or (caller or
    None, status, why not)."""
    owner = claims.user
    how = (f"sign in with {owner}'s own API token (an admin creates one with `slipway token "
           f"create {owner} --role approve`)")
    if not token:
        return None, 401, (f"this link is {owner}'s and needs {owner}'s API token: {how}; "
                           "nothing was recorded")
    caller = caller_for_token(store, token)
    if caller is None:
        return None, 401, f"the API token given is unknown or revoked: {how}; nothing was recorded"
    if caller.user != owner:
        return caller, 403, (f"this link is {owner}'s, but the token given is "
                             f"{caller.user}'s: only {owner} can {claims.decision} through it. "
                             f"{caller.user}, use your own link or `slipway "
                             f"{claims.decision}`; nothing was recorded")
    if "approve" not in caller.roles:
        return caller, 403, (f"token {caller.token} of {owner} lacks the approve role: ask an "
                             f"admin for `slipway token create {owner} --role approve`; "
                             "nothing was recorded")
    if outside := scope_refusal(store, caller, [app]):
        return caller, 403, f"{outside}; nothing was recorded"
    return caller, 200, ""


@router.post("/{link}", response_class=HTMLResponse)
async def use_link(link: str, request: Request, store: StoreDep,
                   client: ClientDep) -> HTMLResponse:
    """Decide as the link's approver, who signs in with their API token; the workflow's
    answer is shown."""
    target = _target(request, link)
    if target is None:
        return _malformed()
    claims, app, env = target
    if claims.exp < time.time():
        return _page(403, "Expired", f"this link expired: use `slipway {claims.decision} {app} "
                                     f"{env}` or the link of a newer notification")
    token = await _presented_token(request)
    caller, status, why_not = await run_in_threadpool(_who, store, token, claims, app)
    if caller is None or why_not:
        await run_in_threadpool(_refused, store, request, status, why_not, app, env,
                                caller.user if caller else "")
        log.info("approval link of %s for %s@%s refused: %s", claims.user, app, env,
                 f"status {status}" if caller else "no valid token")
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return _page(status, "Refused", why_not, _form(claims) if status == 401 else "",
                     headers=headers)
    settings = _settings(request)
    try:
        signed = await sign_approval(client, settings.approval_signing_secret(), caller.hash,
                                     caller.user, claims.release, claims.decision, via="link",
                                     run_id=claims.run)
        data = ApprovalInput(user=caller.user, comment="via approval link", proof=signed.proof)
        answer = await send_update(client, app, env, claims.decision, data, store, "link",
                                   run_id=claims.run)
    except CatalogueError as error:
        log.info("approval link of %s for %s@%s refused: %s", claims.user, app, env, error)
        return _page(403, "Refused", str(error))
    log.info("%s %sd %s@%s through an approval link", caller.user, claims.decision, app, env)
    return _page(200, "Done", str(answer))
