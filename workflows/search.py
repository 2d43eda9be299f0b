"""Search attributes Slipway sets on its workflows, so the Web UI can filter by them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

APP = SearchAttributeKey.for_keyword("App")
ENV = SearchAttributeKey.for_keyword("Env")
STAGE = SearchAttributeKey.for_keyword("Stage")
LANE = SearchAttributeKey.for_keyword("Lane")

ALL = (APP, ENV, STAGE, LANE)
