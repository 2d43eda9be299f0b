"""Which GitLab project an app's source is (the lookup lane branches, hooks and pushes use),
and what a lane deployment is asked to run and where it is routed from."""

from __future__ import annotations

from typing import Any, cast

import pytest

from catalogue.tables import Environment
from lanes.resources import LaneResources, LaneSettings, gitlab_project, repository_path
from schemas.lanes import LaneResourceInput, ResourceKind


@pytest.mark.parametrize(("source", "expected"), [
    ("https://gitlab.example.com/shop/cart.git", ("gitlab.example.com", "shop/cart")),
    ("http://127.0.0.1:41234/shop/cart.git", ("127.0.0.1", "shop/cart")),
    ("ssh://git@gitlab.example.com:2222/shop/cart.git", ("gitlab.example.com", "shop/cart")),
    ("git@gitlab.example.com:shop/cart.git", ("gitlab.example.com", "shop/cart")),
    ("https://gitlab.example.com/group/sub/cart/", ("gitlab.example.com", "group/sub/cart")),
    ("/srv/src/cart", ("", "")),
    ("file:///srv/src/cart", ("", "")),
    ("", ("", "")),
])
def test_repository_path_ignores_ports_and_suffixes(source: str,
                                                    expected: tuple[str, str]) -> None:
    assert repository_path(source) == expected


def test_gitlab_project_only_for_sources_on_the_gitlab_host() -> None:
    gitlab = "http://127.0.0.1:41234"
    assert gitlab_project("http://127.0.0.1:41234/shop/cart.git", gitlab) == "shop/cart"
    assert gitlab_project("git@github.com:shop/cart.git", gitlab) == ""
    assert gitlab_project("http://127.0.0.1:41234/shop/cart.git", "") == ""


def test_a_lane_deployment_is_routed_from_the_apps_qa_environment() -> None:
    resources = LaneResources(cast(Any, None), cast(Any, None), lambda _name: "")
    qa = Environment(app_id=1, env_type="test", cluster="local", lb_port=1)
    prod = Environment(app_id=1, env_type="prod", cluster="local", lb_port=2)
    # pay's QA load balancer routes the lane; an app lanes copy from elsewhere is not routed.
    routed = resources._want("l1", "pay", "reg/pay:1", qa, 1, fail_closed=True)
    assert (routed.route_key, routed.fail_closed) == ("pay-test-local", True)
    assert routed.env_vars["SLIPWAY_LANE"] == "l1"
    assert resources._want("l1", "pay", "reg/pay:1", prod, 1).route_key == ""


def test_message_lanes_are_skipped_and_say_why_on_the_embedded_defaults() -> None:
    resources = LaneResources(cast(Any, None), cast(Any, None), lambda _name: "",
                              lane_settings=LaneSettings(lane_broker_url=""))
    entry = resources.create(LaneResourceInput(lane="l1", kind=ResourceKind.MESSAGES, key="l1"))
    assert "SLIPWAY_LANE_BROKER_URL" in entry.detail["skipped"]
    resources.delete(entry)  # nothing was created: nothing to remove
