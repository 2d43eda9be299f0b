"""Per-application choice of ``Builder``: Docker engine (default), Jenkins job or GitLab CI.

The choice lives in settings, not in the catalogue schema, so switching an application's
builder needs no migration::

    SLIPWAY_BUILDERS='{"cart": {"kind": "jenkins", "job": "shop/cart-image", "note": "cart"},
                       "web":  {"kind": "gitlab", "project": "shop/web"}}'
    SLIPWAY_JENKINS_URL=https://jenkins.example.com  SLIPWAY_JENKINS_CREDENTIAL=jenkins
    SLIPWAY_GITLAB_URL=https://gitlab.example.com    SLIPWAY_GITLAB_CREDENTIAL=gitlab
    SLIPWAY_CREDENTIALS='{"jenkins": "ci-user:api-token", "gitlab": "glpat-..."}'

Applications without a rule build on the Docker engine. Credentials are looked up by name
when a build starts (never stored on the router, never logged, never in workflow history).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.build_output import Remember
from integrations.docker.builder import DockerBuilder, Progress
from integrations.gitlab.builder import GitlabBuilder
from integrations.jenkins.builder import JenkinsBuilder
from schemas.models import BuildInput, ImageSpec
from schemas.settings import get_settings


class BuilderConfigError(Exception):
    """A builder rule points at a CI server that is not configured: retrying won't help."""


class BuilderRule(BaseModel):
    """How one application is built."""

    kind: Literal["docker", "jenkins", "gitlab"] = "docker"
    job: str = ""  # jenkins: the job's full name ("folder/job" for folders)
    project: str = ""  # gitlab: project id or "group/project" path
    note: str = ""  # passed to the job/pipeline as NOTE

    @model_validator(mode="after")
    def _target_named(self) -> BuilderRule:
        if self.kind == "jenkins" and not self.job:
            raise ValueError("a jenkins builder rule needs a job")
        if self.kind == "gitlab" and not self.project:
            raise ValueError("a gitlab builder rule needs a project")
        return self


class BuilderSettings(BaseSettings):
    """Builder routing and CI server addresses, from ``SLIPWAY_``-prefixed variables."""

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", extra="ignore")

    builders: dict[str, BuilderRule] = Field(default_factory=dict)
    jenkins_url: str = ""
    jenkins_credential: str = "jenkins"  # name; its value is "username:api-token"
    gitlab_url: str = ""
    gitlab_credential: str = "gitlab"  # name; its value is a personal/project access token
    # How often a remote build is polled (the activity heartbeats every 2 s regardless, from
    # a background thread, so a slow poll never looks like a lost worker).
    build_poll_seconds: float = 5.0


def _credential_from_settings(name: str) -> str:
    return get_settings().credential(name)


class BuilderRouter:
    """Sends each build to the builder its application's rule names (Docker by default)."""

    def __init__(self, docker: DockerBuilder, settings: BuilderSettings | None = None,
                 credential: Callable[[str], str] = _credential_from_settings) -> None:
        self.docker = docker
        self.settings = settings if settings is not None else BuilderSettings()
        self.credential = credential

    def rule(self, app: str) -> BuilderRule:
        return self.settings.builders.get(app) or BuilderRule()

    def build(self, data: BuildInput, progress: Progress | None = None,
              resume: Mapping[str, Any] | None = None,
              remember: Remember | None = None) -> ImageSpec:
        """Build ``data.app`` at ``data.ref`` with the builder its rule names (or with the
        Jenkins job ``data.jenkins_job`` names, when a lane asks for its own).

        Remote builders hand ``remember`` what identifies their build and, given it back as
        ``resume`` on a retry, follow that build instead of starting another. A Docker build
        dies with its worker and simply runs again."""
        rule = self.rule(data.app)
        # Without a rule-level note, the workflow id tells a CI user which release asked.
        note = rule.note or f"slipway {data.workflow_id}"
        if rule.kind == "jenkins" or data.jenkins_job:
            if not self.settings.jenkins_url:
                raise BuilderConfigError(f"{data.app} builds on Jenkins but SLIPWAY_JENKINS_URL "
                                         "is not set")
            username, _, token = self.credential(self.settings.jenkins_credential).partition(":")
            jenkins = JenkinsBuilder(self.settings.jenkins_url, username, token,
                                     poll_interval=self.settings.build_poll_seconds)
            return jenkins.build(data.app, data.source, data.ref, data.version_label, progress,
                                 job=data.jenkins_job or rule.job, note=note, resume=resume,
                                 remember=remember)
        if rule.kind == "gitlab":
            if not self.settings.gitlab_url:
                raise BuilderConfigError(f"{data.app} builds on GitLab CI but SLIPWAY_GITLAB_URL "
                                         "is not set")
            gitlab = GitlabBuilder(self.settings.gitlab_url,
                                   self.credential(self.settings.gitlab_credential),
                                   poll_interval=self.settings.build_poll_seconds)
            return gitlab.build(data.app, data.source, data.ref, data.version_label, progress,
                                project=rule.project, note=note, resume=resume,
                                remember=remember)
        return self.docker.build(data.app, data.source, data.ref, data.version_label,
                                 progress=progress)
