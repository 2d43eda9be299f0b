"""Approval links: where the approve/reject links of an approval notification land.

``GET /approval/{proof}`` shows what the link does and a button; only the ``POST`` the button
sends decides (chat clients and mail scanners open links to preview them, and a preview must
not approve a release). The POST sends the same Update as ``slipway approve``: the workflow
checks the approver and the four-eyes rule, and the worker checks the link's signature,
expiry and single use. No bearer token: the signed link is the credential.
"""

from __future__ import annotations

import html
import logging
import re

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from catalogue.store import CatalogueError
from schemas.approvals import is_link, read_claims
from schemas.models import ApprovalInput
from starter.api.deps import ClientDep, StoreDep
from starter.service.controls import send_update

router = APIRouter(prefix="/approval", tags=["approval links"])
log = logging.getLogger("slipway.receiver")

_LINK_IN_PATH = re.compile(r"/approval/[^/?\s\"]+")


class RedactApprovalLinks(logging.Filter):
    """Access logs name the path, and a link's path is its credential: log it redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_LINK_IN_PATH.sub("/approval/<redacted>", arg)
                                if isinstance(arg, str) else arg for arg in record.args)
        return True


def redact_access_logs() -> None:
    """Install the redaction on uvicorn's access logger (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(item, RedactApprovalLinks) for item in access.filters):
        access.addFilter(RedactApprovalLinks())


PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Slipway: {title}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 2em auto">
<h2>{title}</h2><p>{body}</p>{form}</body></html>"""


def _page(status: int, title: str, body: str, form: str = "") -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=html.escape(body),
                                    form=form), status_code=status)


def _target(proof: str) -> tuple[str, str, str, str] | None:
    """(user, decision, app, env) named by a well-formed link, else None."""
    claims = read_claims(proof) if is_link(proof) else None
    if claims is None:
        return None
    kind, _, rest = claims.release.partition(":")
    app, _, env = rest.partition(":")
    if kind != "release" or not app or not env:
        return None
    return claims.user, claims.decision, app, env


def _malformed() -> HTMLResponse:
    return _page(400, "Not an approval link",
                 "This link is damaged or not a Slipway approval link; use the link from the "
                 "notification, or `slipway approve APP ENV`.")


@router.get("/{proof}", response_class=HTMLResponse)
async def show_link(proof: str) -> HTMLResponse:
    """What the link will do, with the button that does it."""
    target = _target(proof)
    if target is None:
        return _malformed()
    user, decision, app, env = target
    button = (f'<form method="post"><button type="submit" style="font-size: 1.2em">'
              f'{html.escape(decision)} as {html.escape(user)}</button></form>')
    return _page(200, f"{decision} the release of {app} on {env}?",
                 f"You are about to {decision} the running release of {app} on {env} as "
                 f"{user}.", button)


@router.post("/{proof}", response_class=HTMLResponse)
async def use_link(proof: str, store: StoreDep, client: ClientDep) -> HTMLResponse:
    """Send the link's decision as its approver; the workflow's answer is shown."""
    target = _target(proof)
    if target is None:
        return _malformed()
    user, decision, app, env = target
    data = ApprovalInput(user=user, comment="via approval link", proof=proof)
    try:
        answer = await send_update(client, app, env, decision, data, store, "link")
    except CatalogueError as error:
        log.info("approval link of %s for %s@%s refused: %s", user, app, env, error)
        return _page(403, "Refused", str(error))
    log.info("%s %sd %s@%s through an approval link", user, decision, app, env)
    return _page(200, "Done", str(answer))
