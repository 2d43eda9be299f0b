"""``GET /metrics``: Slipway's own metrics in Prometheus' text format, read from the catalogue
at each scrape (:mod:`starter.service.metrics`). Prometheus authenticates like any caller,
with a token that has the ``read`` role (``authorization: {credentials_file: …}`` in its
scrape config): the figures name applications and environments."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from starter.api.deps import Reader, StoreDep
from starter.service.metrics import exposition

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(_caller: Reader, store: StoreDep) -> Response:
    """Releases by outcome, approvals waiting and their age, stage durations, lanes, analysis
    verdicts, DORA figures per application (``read`` role)."""
    return Response(await run_in_threadpool(exposition, store), media_type=CONTENT_TYPE_LATEST)
