"""GitlabBuilder against an HTTP fake of GitLab: create, poll, result, failure, cancel."""

from __future__ import annotations

import pytest
from temporalio.exceptions import CancelledError

from integrations.build_output import BuildFailedError
from integrations.gitlab.builder import GitlabBuilder
from tests.support.gitlab_fake import DIGEST, FakeJob, PipelineScript, running_gitlab

PROJECT = "shop/cart"


def builder(url: str) -> GitlabBuilder:
    return GitlabBuilder(url, "glpat-s3cret", poll_interval=0.01)


def test_success_returns_image_and_digest_and_sends_variables() -> None:
    with running_gitlab({"shop/other": PipelineScript(), PROJECT: PipelineScript()}) as fake:
        messages: list[str] = []
        image = builder(fake.url).build("cart", "git@x:shop/cart.git", "v7-tag", "v7",
                                        messages.append, project=PROJECT, note="hotfix")
    assert image.image == "registry.test/app:v1"
    assert image.digest == DIGEST
    assert all(c.token == "glpat-s3cret" for c in fake.calls)
    assert fake.paths() == [
        f"/api/v4/projects/{PROJECT}",
        "/api/v4/projects/2/pipeline",
        "/api/v4/projects/2/pipelines/100",
        "/api/v4/projects/2/pipelines/100",
        "/api/v4/projects/2/pipelines/100",
        "/api/v4/projects/2/pipelines/100/jobs",
        "/api/v4/projects/2/jobs/1001/trace",  # the last job's log names the image
    ]
    create = fake.calls[1]
    assert create.method == "POST"
    assert create.body == {"ref": "v7-tag", "variables": [
        {"key": "VERSION", "value": "v7"}, {"key": "NOTE", "value": "hotfix"}]}
    assert any("pipeline 100: running" in m for m in messages)


def test_failed_pipeline_raises_with_url_and_failed_job_log_tail() -> None:
    trace = "\n".join(f"step {n}" for n in range(1, 41)) + "\nERROR: Job failed\n"
    script = PipelineScript(status="failed", jobs=[
        FakeJob("build", status="failed", trace=trace), FakeJob("image", status="skipped")])
    with (
        running_gitlab({PROJECT: script}) as fake,
        pytest.raises(BuildFailedError) as caught,
    ):
        builder(fake.url).build("cart", "src", "main", "v8", None, project=PROJECT)
    message = str(caught.value)
    assert f"{fake.url}/{PROJECT}/-/pipelines/100" in message
    assert "failed" in message
    assert "ERROR: Job failed" in message and "step 22" in message
    assert "step 21\n" not in message  # only the last 20 lines
    assert fake.paths()[-1] == "/api/v4/projects/1/jobs/1000/trace"


def test_success_without_image_line_is_a_failure() -> None:
    script = PipelineScript(jobs=[FakeJob("image", trace="pushed something\n")])
    with (
        running_gitlab({PROJECT: script}) as fake,
        pytest.raises(BuildFailedError, match="no IMAGE= line"),
    ):
        builder(fake.url).build("cart", "src", "main", "v9", None, project=PROJECT)


def test_cancellation_cancels_the_pipeline() -> None:
    polls = 0

    def cancel_after_three(_message: str) -> None:
        nonlocal polls
        polls += 1
        if polls > 3:
            raise CancelledError("activity cancelled")

    with (
        running_gitlab({PROJECT: PipelineScript(running_polls=100)}) as fake,
        pytest.raises(CancelledError),
    ):
        builder(fake.url).build("cart", "src", "main", "v10", cancel_after_three,
                                project=PROJECT)
    assert fake.paths("POST")[-1] == "/api/v4/projects/1/pipelines/100/cancel"
    assert fake.pipelines[100].cancelled
    assert "/api/v4/projects/1/pipelines/100/jobs" not in fake.paths()


def test_missing_ref_is_refused_before_any_call() -> None:
    with (
        running_gitlab({PROJECT: PipelineScript()}) as fake,
        pytest.raises(BuildFailedError, match="needs a ref"),
    ):
        builder(fake.url).build("cart", "src", None, "v11", None, project=PROJECT)
    assert fake.calls == []


def test_a_retried_build_follows_the_remembered_pipeline_instead_of_creating_another() -> None:
    with running_gitlab({PROJECT: PipelineScript()}) as fake:
        remembered: dict[str, object] = {}
        first = builder(fake.url).build("cart", "src", "v7-tag", "v7", None, project=PROJECT,
                                        remember=remembered.update)
        assert remembered == {"gitlab_project": PROJECT, "gitlab_pipeline_id": 100}
        again = builder(fake.url).build("cart", "src", "v7-tag", "v7", None, project=PROJECT,
                                        resume=remembered)
    assert first == again
    creates = [c for c in fake.calls if c.method == "POST" and c.path.endswith("/pipeline")]
    assert len(creates) == 1
