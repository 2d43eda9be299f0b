"""Search attributes Slipway sets on its workflows, so the Web UI can filter by them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

APP = SearchAttributeKey.for_keyword("App")
ENV = SearchAttributeKey.for_keyword("Env")
STAGE = SearchAttributeKey.for_keyword("Stage")
LANE = SearchAttributeKey.for_keyword("Lane")

ALL = (APP, ENV, STAGE, LANE)


def release_attributes(app: str, env: str) -> TypedSearchAttributes:
    """What a release starts with: ``App`` and ``Env`` (how ``freeze now`` and the Web UI find
    it) and ``Stage`` until its first stage is set."""
    return TypedSearchAttributes([SearchAttributePair(APP, app), SearchAttributePair(ENV, env),
                                  SearchAttributePair(STAGE, "queued")])
