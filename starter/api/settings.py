"""Settings of the HTTP receiver (``SLIPWAY_``-prefixed environment variables).

Kept apart from :mod:`schemas.settings` because only ``slipway server`` needs them.
Secrets are named, never held here: the webhook secrets are credential *names* whose values
come from ``SLIPWAY_CREDENTIALS`` through :meth:`schemas.settings.Settings.credential`.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import BaseModel, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class HookRule(BaseModel):
    """Map a git event of one GitLab project to a release of ``app`` on ``env``.

    ``tag_pattern`` (a glob such as ``v*``) matches tag pushes; ``branch`` matches pushes to
    that branch (seed 002: develop → test, master → prod). Exactly one of them is set.
    """

    project: str
    app: str
    env: str
    tag_pattern: str = ""
    branch: str = ""

    @model_validator(mode="after")
    def _one_trigger(self) -> HookRule:
        if bool(self.tag_pattern) == bool(self.branch):
            raise ValueError(f"hook rule for {self.app}@{self.env}: set exactly one of "
                             "tag_pattern or branch")
        return self

    def matches_tag(self, project: str, tag: str) -> bool:
        return bool(self.tag_pattern) and project == self.project and fnmatchcase(
            tag, self.tag_pattern)

    def matches_branch(self, project: str, branch: str) -> bool:
        return bool(self.branch) and project == self.project and branch == self.branch


class ReceiverSettings(BaseSettings):
    """What ``slipway server`` reads besides the common settings."""

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_")

    # Credential names (values in SLIPWAY_CREDENTIALS). An unset value refuses every hook.
    gitlab_hook_credential: str = "gitlab-hook"
    registry_hook_credential: str = "registry-hook"
    # SLIPWAY_HOOK_RULES='[{"project": "shop/shop", "tag_pattern": "v*", "app": "shop",
    #                        "env": "prod"}]'
    hook_rules: list[HookRule] = []
