"""``GET /api/insights``: the insights report (DORA figures, release durations) as JSON, CSV
or the self-contained HTML page, for the releases the caller's token may read (``read``
role; a scoped token sees its applications only). Definitions: docs/insights.md."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from catalogue.store import CatalogueError
from schemas.durations import HISTORY_WINDOW
from schemas.insights import InsightsReport
from starter.api.deps import Reader, StoreDep, require_scope
from starter.service.insights import InsightsQuery, insights
from starter.service.insights_report import html_report, to_csv
from starter.service.validation import parse_duration

router = APIRouter(tags=["insights"])


@router.get("/api/insights", response_model=InsightsReport)
async def insights_route(request: Request, caller: Reader, store: StoreDep, app: str = "",
                         team: str = "", env_type: str = "", since: str = "30d",
                         failure_window: str = "24h",
                         format: Literal["json", "csv", "html"] = "json") -> Response:
    """Deployment frequency, lead time, change failure rate, time to restore and stage
    durations over ``since``, for every release and per application, team and environment
    type; ``format`` csv or html for the table or the report with charts."""
    try:
        query = InsightsQuery(
            since_seconds=parse_duration(since, "since", HISTORY_WINDOW),
            failure_window_seconds=parse_duration(failure_window, "failure_window",
                                                  HISTORY_WINDOW),
            app=app, team=team, env_type=env_type)
    except CatalogueError as error:
        raise HTTPException(422, str(error)) from error
    if app:
        await run_in_threadpool(require_scope, store, request, caller, [app])
    found = await run_in_threadpool(insights, store, query, caller.scope)
    if format == "csv":
        return Response(to_csv(found), media_type="text/csv")
    if format == "html":
        return Response(html_report(found), media_type="text/html")
    return Response(found.model_dump_json(), media_type="application/json")
