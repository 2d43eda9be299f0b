"""BuilderRouter: rules from settings pick Jenkins, GitLab or Docker; credentials by name."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities.build import BuildActivities
from integrations.builders import BuilderConfigError, BuilderRouter, BuilderRule, BuilderSettings
from integrations.docker.builder import DockerBuilder, Progress
from schemas.models import BuildInput, ImageSpec
from tests.support.gitlab_fake import PipelineScript, running_gitlab
from tests.support.jenkins_fake import JobScript, running_jenkins


class RecordingDocker(DockerBuilder):
    """A DockerBuilder that records builds instead of talking to an engine."""

    def __init__(self) -> None:
        super().__init__("unix:///nonexistent.sock")
        self.builds: list[tuple[str, str, str | None, str]] = []

    def build(self, app: str, source: str, ref: str | None, version_label: str,
              progress: Progress | None = None) -> ImageSpec:
        self.builds.append((app, source, ref, version_label))
        return ImageSpec(image=f"slipway/{app}:{version_label}", digest="sha256:local")


class Credentials:
    """Credential lookup by name that remembers which names were asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[str] = []

    def __call__(self, name: str) -> str:
        self.asked.append(name)
        return self.values.get(name, "")


def data(app: str) -> BuildInput:
    return BuildInput(app=app, source="/src/" + app, ref="main", version_label="v3",
                      workflow_id="release-" + app)


def test_rule_sends_the_build_to_jenkins_with_named_credentials() -> None:
    docker = RecordingDocker()
    credentials = Credentials({"ci-jenkins": "robot:tok3n"})
    with running_jenkins({"shop/cart-image": JobScript()}) as fake:
        settings = BuilderSettings(
            builders={"cart": BuilderRule(kind="jenkins", job="shop/cart-image")},
            jenkins_url=fake.url, jenkins_credential="ci-jenkins", build_poll_seconds=0.01)
        image = BuilderRouter(docker, settings, credentials).build(data("cart"), None)
    assert image.image == "registry.test/app:v1"
    assert credentials.asked == ["ci-jenkins"]
    assert docker.builds == []
    trigger = next(c for c in fake.calls if c.path.endswith("/buildWithParameters"))
    assert trigger.path == "/job/shop/job/cart-image/buildWithParameters"
    assert trigger.query == {"REF": "main", "VERSION": "v3", "NOTE": "slipway release-cart"}
    assert trigger.authorization == "Basic " + base64.b64encode(b"robot:tok3n").decode()


def test_a_lane_job_overrides_the_rule() -> None:
    docker = RecordingDocker()
    with running_jenkins({"pay-42/cart": JobScript()}) as fake:
        settings = BuilderSettings(jenkins_url=fake.url, build_poll_seconds=0.01)
        lane_build = data("cart").model_copy(update={"jenkins_job": "pay-42/cart",
                                                     "ref": "feature/pay-42"})
        image = BuilderRouter(docker, settings, Credentials({"jenkins": "robot:t"})).build(
            lane_build, None)
    assert image.image == "registry.test/app:v1" and docker.builds == []
    trigger = next(c for c in fake.calls if c.path.endswith("/buildWithParameters"))
    assert trigger.path == "/job/pay-42/job/cart/buildWithParameters"
    assert trigger.query["REF"] == "feature/pay-42"


def test_rule_sends_the_build_to_gitlab_with_named_credentials() -> None:
    credentials = Credentials({"gitlab": "glpat-xyz"})
    with running_gitlab({"shop/web": PipelineScript(running_polls=0)}) as fake:
        settings = BuilderSettings(
            builders={"web": BuilderRule(kind="gitlab", project="shop/web", note="web app")},
            gitlab_url=fake.url, build_poll_seconds=0.01)
        image = BuilderRouter(RecordingDocker(), settings, credentials).build(data("web"), None)
    assert image.image == "registry.test/app:v1"
    assert credentials.asked == ["gitlab"]
    assert {c.token for c in fake.calls} == {"glpat-xyz"}
    assert fake.calls[1].body["variables"][1] == {"key": "NOTE", "value": "web app"}


def test_no_rule_builds_on_docker_without_reading_credentials() -> None:
    docker = RecordingDocker()
    credentials = Credentials({})
    settings = BuilderSettings(builders={"cart": BuilderRule(kind="jenkins", job="j")},
                               jenkins_url="http://127.0.0.1:9")
    image = BuilderRouter(docker, settings, credentials).build(data("shop"), None)
    assert image == ImageSpec(image="slipway/shop:v3", digest="sha256:local")
    assert docker.builds == [("shop", "/src/shop", "main", "v3")]
    assert credentials.asked == []


def test_rule_without_a_configured_server_is_a_config_error() -> None:
    settings = BuilderSettings(builders={"cart": BuilderRule(kind="gitlab", project="p")})
    with pytest.raises(BuilderConfigError, match="SLIPWAY_GITLAB_URL"):
        BuilderRouter(RecordingDocker(), settings, Credentials({})).build(data("cart"), None)


def test_settings_read_rules_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPWAY_BUILDERS", '{"cart": {"kind": "jenkins", "job": "cart"}}')
    monkeypatch.setenv("SLIPWAY_JENKINS_URL", "https://jenkins.test")
    settings = BuilderSettings()
    assert settings.builders["cart"] == BuilderRule(kind="jenkins", job="cart")
    assert settings.jenkins_url == "https://jenkins.test"
    assert settings.gitlab_credential == "gitlab"


def test_rules_must_name_their_job_or_project() -> None:
    with pytest.raises(ValidationError, match="needs a job"):
        BuilderRule(kind="jenkins")
    with pytest.raises(ValidationError, match="needs a project"):
        BuilderRule(kind="gitlab")


def test_activity_cancellation_stops_the_jenkins_build_and_failures_are_permanent() -> None:
    """Through the real activity: heartbeat → cancelled → /stop; a failed build → non-retryable."""
    with running_jenkins({"cart": JobScript(running_polls=1000),
                          "broken": JobScript(result="FAILURE")}) as fake:
        settings = BuilderSettings(
            builders={"cart": BuilderRule(kind="jenkins", job="cart"),
                      "broken": BuilderRule(kind="jenkins", job="broken")},
            jenkins_url=fake.url, build_poll_seconds=0.01)
        activities = BuildActivities(BuilderRouter(RecordingDocker(), settings, Credentials({})))
        env = ActivityEnvironment()
        beats: list[object] = []

        def on_heartbeat(*details: object) -> None:
            beats.append(details)
            # Cancel once the build runs: the heartbeat carries the progress message and
            # the checkpoint (queue id, build number) a retry would resume from.
            detail = details[0]
            if isinstance(detail, dict) and "#1: building" in str(detail["message"]):
                assert detail["checkpoint"]["jenkins_build"] == 1
                env.cancel()

        env.on_heartbeat = on_heartbeat
        with pytest.raises(CancelledError):
            env.run(activities.build_image, data("cart"))
        assert fake.paths("POST")[-1] == "/job/cart/1/stop"

        with pytest.raises(ApplicationError) as caught:
            ActivityEnvironment().run(activities.build_image, data("broken"))
    assert caught.value.non_retryable
    assert caught.value.type == "BuildFailedError"
    assert f"{fake.url}/job/broken/1/" in caught.value.message
