"""JenkinsBuilder against an HTTP fake of Jenkins: trigger, follow, result, failure, cancel."""

from __future__ import annotations

import base64

import pytest
from temporalio.exceptions import CancelledError

from integrations.build_output import BuildFailedError, parse_image_lines
from integrations.jenkins.builder import JenkinsBuilder
from tests.support.jenkins_fake import JobScript, running_jenkins

DIGEST = "sha256:" + "cd" * 32


def builder(url: str) -> JenkinsBuilder:
    return JenkinsBuilder(url, "ci", "s3cret", poll_interval=0.01)


def test_success_returns_image_and_digest_and_sends_parameters() -> None:
    script = JobScript(description=f"built ok\nIMAGE=harbor.test/shop/cart:v7\nDIGEST={DIGEST}\n")
    with running_jenkins({"cart-build": script}) as fake:
        messages: list[str] = []
        image = builder(fake.url).build("cart", "git@x:shop/cart.git", "release/7", "v7",
                                        messages.append, job="cart-build", note="hotfix")
    assert image.image == "harbor.test/shop/cart:v7"
    assert image.digest == DIGEST
    triggers = [c for c in fake.calls if c.path == "/job/cart-build/buildWithParameters"]
    assert len(triggers) == 1
    assert triggers[0].method == "POST"
    assert triggers[0].query == {"REF": "release/7", "VERSION": "v7", "NOTE": "hotfix"}
    expected_auth = "Basic " + base64.b64encode(b"ci:s3cret").decode()
    assert all(c.authorization == expected_auth for c in fake.calls)
    paths = fake.paths()
    assert paths[0] == "/crumbIssuer/api/json"
    assert paths.count("/queue/item/1/api/json") == 2  # once queued, once started
    assert paths.count("/job/cart-build/1/api/json") == 3  # two running polls, then done
    assert "/job/cart-build/1/stop" not in paths
    assert any("queued" in m for m in messages)
    assert any("#1: building" in m for m in messages)


def test_failed_build_raises_with_url_and_log_tail() -> None:
    console = "\n".join(f"line {n}" for n in range(1, 31)) + "\nFinished: FAILURE\n"
    with (
        running_jenkins({"cart-build": JobScript(result="FAILURE", console=console)}) as fake,
        pytest.raises(BuildFailedError) as caught,
    ):
        builder(fake.url).build("cart", "src", "main", "v8", None, job="cart-build")
    message = str(caught.value)
    assert f"{fake.url}/job/cart-build/1/" in message
    assert "FAILURE" in message
    assert "line 30" in message and "line 12" in message
    assert "line 11\n" not in message  # only the last 20 lines
    assert "/job/cart-build/1/consoleText" in fake.paths("GET")


def test_success_without_image_line_is_a_failure() -> None:
    with (
        running_jenkins({"cart-build": JobScript(description="no image here")}) as fake,
        pytest.raises(BuildFailedError, match="no IMAGE= line"),
    ):
        builder(fake.url).build("cart", "src", "main", "v9", None, job="cart-build")


def test_cancellation_stops_the_build() -> None:
    polls = 0

    def cancel_after_three(_message: str) -> None:
        nonlocal polls
        polls += 1
        if polls > 3:
            raise CancelledError("activity cancelled")

    with (
        running_jenkins({"cart-build": JobScript(queued_polls=1, running_polls=100)}) as fake,
        pytest.raises(CancelledError),
    ):
        builder(fake.url).build("cart", "src", "main", "v10", cancel_after_three,
                                job="cart-build")
    assert fake.paths("POST")[-1] == "/job/cart-build/1/stop"
    assert fake.builds[("cart-build", 1)].stopped


def test_cancellation_while_queued_cancels_the_queue_item() -> None:
    def cancel(_message: str) -> None:
        raise CancelledError("activity cancelled")

    with (
        running_jenkins({"cart-build": JobScript(queued_polls=5)}) as fake,
        pytest.raises(CancelledError),
    ):
        builder(fake.url).build("cart", "src", "main", "v11", cancel, job="cart-build")
    cancels = [c for c in fake.calls if c.path == "/queue/cancelItem"]
    assert [c.query for c in cancels] == [{"id": "1"}]
    assert not fake.builds


def test_parse_image_lines_takes_last_values() -> None:
    assert parse_image_lines("IMAGE=a:1\nnoise\nIMAGE=a:2\n DIGEST=sha256:x \nOTHER=y") == {
        "IMAGE": "a:2", "DIGEST": "sha256:x"}


def test_a_retried_build_follows_the_remembered_build_instead_of_queueing_another() -> None:
    script = JobScript(description=f"IMAGE=harbor.test/shop/cart:v7\nDIGEST={DIGEST}\n")
    with running_jenkins({"cart-build": script}) as fake:
        remembered: dict[str, object] = {}
        first = builder(fake.url).build("cart", "src", "main", "v7", None, job="cart-build",
                                        remember=remembered.update)
        assert remembered == {"jenkins_job": "cart-build", "jenkins_queue_id": 1,
                              "jenkins_build": 1}
        # The worker died after queueing: the retry gets only the queue id back.
        again = builder(fake.url).build("cart", "src", "main", "v7", None, job="cart-build",
                                        resume={"jenkins_job": "cart-build",
                                                "jenkins_queue_id": 1})
        # A checkpoint of another job (the rule changed meanwhile) is not followed.
        other = builder(fake.url).build("cart", "src", "main", "v7", None, job="cart-build",
                                        resume={"jenkins_job": "old-job", "jenkins_build": 9})
    assert first == again == other
    triggers = [c for c in fake.calls if c.path == "/job/cart-build/buildWithParameters"]
    assert len(triggers) == 2  # the first build and the one for the other job's checkpoint
