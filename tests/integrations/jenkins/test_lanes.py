"""JenkinsLanes against the Jenkins HTTP fake: the exact API calls python-jenkins makes."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import jenkins
import pytest

from integrations.jenkins.lanes import (
    DEFAULT_JOB_TEMPLATE,
    JenkinsLanes,
    lane_branch,
    render,
)
from tests.support.jenkins_fake import JenkinsFake, running_jenkins

MINIMAL_TEMPLATE = "<project><description>{app} in {lane} builds {branch}</description></project>"


def _writes(fake: JenkinsFake) -> list[tuple[str, str]]:
    """The state-changing requests, in order (reads and crumb probes left out)."""
    return [(c.method, c.path + ("?name=" + c.query["name"] if "name" in c.query else ""))
            for c in fake.calls if c.method == "POST"]


def test_folder_is_created_once_with_folder_xml() -> None:
    with running_jenkins() as fake:
        lanes = JenkinsLanes(fake.url, "slipway", "api-token")
        assert lanes.ensure_folder("pay-42") is True
        assert lanes.ensure_folder("pay-42") is False  # idempotent: exists, nothing sent

        assert _writes(fake) == [("POST", "/createItem?name=pay-42")]
        create = next(c for c in fake.calls if c.method == "POST")
        root = ET.fromstring(create.body.split("?>", 1)[1])
        assert root.tag == "com.cloudbees.hudson.plugins.folder.Folder"
        assert "feature/pay-42" in (root.findtext("description") or "")
        expected = "Basic " + base64.b64encode(b"slipway:api-token").decode()
        assert create.authorization == expected
        assert fake.is_folder("pay-42")


def test_jobs_per_app_with_the_lane_branch() -> None:
    with running_jenkins() as fake:
        lanes = JenkinsLanes(fake.url, "slipway", "api-token")
        lanes.ensure_folder("pay-42")
        assert lanes.ensure_job("pay-42", "cart", MINIMAL_TEMPLATE) is True
        assert lanes.ensure_job("pay-42", "web", MINIMAL_TEMPLATE) is True

        assert _writes(fake) == [("POST", "/createItem?name=pay-42"),
                                 ("POST", "/job/pay-42/createItem?name=cart"),
                                 ("POST", "/job/pay-42/createItem?name=web")]
        assert fake.items["pay-42/cart"] == (
            "<project><description>cart in pay-42 builds feature/pay-42</description></project>")
        assert fake.items["pay-42/web"] == (
            "<project><description>web in pay-42 builds feature/pay-42</description></project>")
        assert lanes.jobs("pay-42") == ["cart", "web"]


def test_existing_job_is_reconfigured_not_recreated() -> None:
    with running_jenkins() as fake:
        lanes = JenkinsLanes(fake.url, "slipway", "api-token")
        lanes.ensure_folder("pay-42")
        lanes.ensure_job("pay-42", "cart", MINIMAL_TEMPLATE)
        fake.calls.clear()

        assert lanes.ensure_job("pay-42", "cart", "<project>{branch} v2</project>") is False
        assert _writes(fake) == [("POST", "/job/pay-42/job/cart/config.xml")]
        assert fake.items["pay-42/cart"] == "<project>feature/pay-42 v2</project>"


def test_default_template_is_valid_xml_building_the_lane_branch() -> None:
    with running_jenkins() as fake:
        lanes = JenkinsLanes(fake.url, "", "")
        lanes.ensure_folder("pay-42")
        lanes.ensure_job("pay-42", "cart", values={"git_url": "https://git.test/shop/cart.git"})

        root = ET.fromstring(fake.items["pay-42/cart"].split("?>", 1)[1])
        assert root.tag == "flow-definition"
        params = {p.findtext("name"): p.findtext("defaultValue")
                  for p in root.iter("hudson.model.StringParameterDefinition")}
        assert params["REF"] == "feature/pay-42"
        assert params["GIT_URL"] == "https://git.test/shop/cart.git"
        script = root.findtext("definition/script") or ""
        assert "APP = 'cart'" in script and "docker build" in script and "&&" in script
        # Groovy's own ${...} survives substitution untouched.
        assert "${params.REGISTRY}" in script


def test_delete_folder_twice_is_fine() -> None:
    with running_jenkins() as fake:
        lanes = JenkinsLanes(fake.url, "slipway", "api-token")
        lanes.ensure_folder("pay-42")
        lanes.ensure_job("pay-42", "cart", MINIMAL_TEMPLATE)
        fake.calls.clear()

        assert lanes.delete_folder("pay-42") is True
        assert lanes.delete_folder("pay-42") is False
        assert _writes(fake) == [("POST", "/job/pay-42/doDelete")]
        assert fake.items == {}
        assert lanes.jobs("pay-42") == []


def test_delete_job_leaves_a_folder_the_lane_did_not_create() -> None:
    with running_jenkins() as fake:
        lanes = JenkinsLanes(fake.url, "slipway", "api-token")
        lanes.ensure_folder("pay-42")
        lanes.ensure_job("pay-42", "cart", MINIMAL_TEMPLATE)
        lanes.ensure_job("pay-42", "web", MINIMAL_TEMPLATE)
        fake.calls.clear()

        assert lanes.delete_job("pay-42", "cart") is True
        assert lanes.delete_job("pay-42", "cart") is False
        assert _writes(fake) == [("POST", "/job/pay-42/job/cart/doDelete")]
        assert lanes.jobs("pay-42") == ["web"]


def test_job_in_missing_folder_is_an_error() -> None:
    with running_jenkins() as fake:
        lanes = JenkinsLanes(fake.url, "slipway", "api-token")
        with pytest.raises(jenkins.JenkinsException, match="folder"):
            lanes.ensure_job("nope", "cart", MINIMAL_TEMPLATE)


@pytest.mark.parametrize("lane", ["", "a/b"])
def test_names_that_would_address_another_item_are_refused(lane: str) -> None:
    lanes = JenkinsLanes("http://127.0.0.1:9", "", "")
    with pytest.raises(ValueError, match="invalid Jenkins folder name"):
        lanes.ensure_folder(lane)


def test_render_escapes_values_and_leaves_unknown_braces() -> None:
    assert render("<a>{app}</a>{{x}}${y}", {"app": "a&b"}) == "<a>a&amp;b</a>{{x}}${y}"
    assert lane_branch("pay-42") == "feature/pay-42"
    assert "{lane}" in DEFAULT_JOB_TEMPLATE
