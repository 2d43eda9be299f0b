"""`CodeHost` on GitLab (``python-gitlab``): branches, tags and project webhooks.

Every operation is idempotent where a retry may repeat it:

* :meth:`GitlabCodeHost.ensure_branch` creates a branch only when it is missing and never
  moves an existing one (a lane's branch may already carry work);
* :meth:`GitlabCodeHost.delete_branch` and :meth:`GitlabCodeHost.delete_project_hook` accept
  that the thing is already gone;
* :meth:`GitlabCodeHost.ensure_project_hook` finds the project's hook by URL before creating
  one, so re-running it never adds a second hook.

The access token goes in the ``PRIVATE-TOKEN`` header only; it is never put in messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gitlab
from gitlab.exceptions import GitlabDeleteError, GitlabError, GitlabGetError
from gitlab.v4.objects import Project


class CodeHostError(RuntimeError):
    """GitLab refused or failed an operation."""


@dataclass(frozen=True)
class Tag:
    name: str
    sha: str
    message: str = ""


class GitlabCodeHost:
    """Branches, tags and webhooks of GitLab projects (``project``: id or ``group/path``)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.client = gitlab.Gitlab(self.url, private_token=token or None, timeout=timeout)

    def __repr__(self) -> str:
        return f"GitlabCodeHost({self.url!r})"

    def _project(self, project: str | int) -> Project:
        # lazy: no request until an operation needs one; the path is url-encoded as the id.
        return self.client.projects.get(project, lazy=True)

    # ---------------------------------------------------------------- branches

    def ensure_branch(self, project: str | int, branch: str, base: str) -> bool:
        """Create ``branch`` from ``base`` (branch, tag or sha) unless it exists.

        True when it was created; an existing branch is left exactly as it is.
        """
        target = self._project(project)
        try:
            target.branches.get(branch)
            return False
        except GitlabGetError as error:
            if error.response_code != 404:
                raise CodeHostError(f"GitLab {self.url}: reading branch {branch} of "
                                    f"{project} failed: {error.error_message}") from error
        try:
            target.branches.create({"branch": branch, "ref": base})
        except GitlabError as error:
            raise CodeHostError(f"GitLab {self.url}: creating branch {branch} of {project} "
                                f"from {base} failed: {error.error_message}") from error
        return True

    def branch_head(self, project: str | int, branch: str) -> str | None:
        """The commit ``branch`` points at, or None when there is no such branch."""
        try:
            found: Any = self._project(project).branches.get(branch)
        except GitlabGetError as error:
            if error.response_code == 404:
                return None
            raise CodeHostError(f"GitLab {self.url}: reading branch {branch} of {project} "
                                f"failed: {error.error_message}") from error
        return str(found.commit["id"])

    def delete_branch(self, project: str | int, branch: str) -> bool:
        """Delete ``branch``; False when it did not exist."""
        try:
            self._project(project).branches.delete(branch)
        except GitlabDeleteError as error:
            if error.response_code == 404:
                return False
            raise CodeHostError(f"GitLab {self.url}: deleting branch {branch} of {project} "
                                f"failed: {error.error_message}") from error
        return True

    # ---------------------------------------------------------------- tags

    def tags(self, project: str | int) -> list[Tag]:
        """Every tag of ``project`` (all pages), as GitLab orders them."""
        try:
            found: list[Any] = self._project(project).tags.list(get_all=True)
        except GitlabError as error:
            raise CodeHostError(f"GitLab {self.url}: listing tags of {project} failed: "
                                f"{error.error_message}") from error
        return [Tag(tag.name, str((tag.commit or {}).get("id", "")), tag.message or "")
                for tag in found]

    def create_tag(self, project: str | int, tag: str, ref: str, message: str = "") -> Tag:
        """Create ``tag`` at ``ref`` (annotated when ``message`` is given)."""
        data = {"tag_name": tag, "ref": ref}
        if message:
            data["message"] = message
        try:
            created: Any = self._project(project).tags.create(data)
        except GitlabError as error:
            raise CodeHostError(f"GitLab {self.url}: creating tag {tag} of {project} at {ref} "
                                f"failed: {error.error_message}") from error
        return Tag(created.name, str((created.commit or {}).get("id", "")),
                   created.message or "")

    # ---------------------------------------------------------------- webhooks

    def ensure_project_hook(self, project: str | int, url: str, token: str, *,
                            push: bool = True, tag_push: bool = True) -> int:
        """The id of ``project``'s hook posting to ``url``, created when there is none.

        An existing hook keeps its id; its push / tag push switches are brought in line.
        (GitLab never returns a hook's secret, so a rotated secret needs delete + ensure.)
        """
        target = self._project(project)
        try:
            hooks: list[Any] = target.hooks.list(get_all=True)
            for hook in hooks:
                if hook.url == url:
                    if (hook.push_events, hook.tag_push_events) != (push, tag_push):
                        hook.push_events, hook.tag_push_events = push, tag_push
                        hook.save()
                    return int(hook.id)
            created: Any = target.hooks.create({
                "url": url, "token": token, "push_events": push, "tag_push_events": tag_push,
                "enable_ssl_verification": url.startswith("https://")})
        except GitlabError as error:
            raise CodeHostError(f"GitLab {self.url}: setting up the webhook of {project} "
                                f"failed: {error.error_message}") from error
        return int(created.id)

    def delete_project_hook(self, project: str | int, hook_id: int) -> bool:
        """Delete hook ``hook_id``; False when it did not exist."""
        try:
            self._project(project).hooks.delete(hook_id)
        except GitlabDeleteError as error:
            if error.response_code == 404:
                return False
            raise CodeHostError(f"GitLab {self.url}: deleting hook {hook_id} of {project} "
                                f"failed: {error.error_message}") from error
        return True
