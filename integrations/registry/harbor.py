"""Harbor's own API (v2.0), for what the distribution API can't do the Harbor way.

Deleting an artifact (with its tags) and checking one exists. Which API ``build delete`` uses
is ``SLIPWAY_REGISTRY_KIND`` (``distribution``, the default, or ``harbor``), read by
:class:`RegistrySettings`.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from integrations.registry.client import (
    _REPOSITORY_RE,
    _TAG_RE,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
    _check_repository,
    _redact,
    is_digest,
)


class RegistrySettings(BaseSettings):
    """Which API deletes images: plain OCI distribution, or Harbor's (``SLIPWAY_REGISTRY_KIND``)."""

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", extra="ignore")

    registry_kind: Literal["distribution", "harbor"] = "distribution"


class HarborClient:
    """Harbor API v2.0 client (``base_url`` like ``https://harbor.example.com``), basic auth.

    Harbor names an image ``<project>/<repository>``; a repository with slashes goes in the
    path URL-encoded twice (``a/b`` → ``a%252Fb``), as Harbor's API asks.
    """

    def __init__(self, base_url: str, username: str, password: str, verify: bool = True,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.name = _redact(self.base_url)
        self._http = httpx.Client(
            base_url=self.base_url, verify=verify, timeout=timeout, transport=transport,
            auth=httpx.BasicAuth(username, password) if username else None,
            headers={"Accept": "application/json"})

    def __repr__(self) -> str:
        return f"HarborClient({self.name!r}, username={self.username!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HarborClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def artifact_path(project: str, repository: str, reference: str) -> str:
        if not _REPOSITORY_RE.fullmatch(project) or "/" in project:
            raise ValueError(f"invalid Harbor project name {project!r}")
        _check_repository(repository)
        if not (is_digest(reference) or _TAG_RE.fullmatch(reference)):
            raise ValueError(f"invalid tag or digest {reference!r}")
        encoded = quote(quote(repository, safe=""), safe="")
        return f"/api/v2.0/projects/{project}/repositories/{encoded}/artifacts/{reference}"

    def _request(self, method: str, path: str) -> httpx.Response:
        try:
            response = self._http.request(method, path)
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(
                f"Harbor {self.name} is unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"Harbor {self.name} refused {method} {path} for user "
                f"{self.username or '(anonymous)'} (HTTP {response.status_code})")
        if response.status_code >= 500:
            raise RegistryUnavailableError(
                f"Harbor {self.name} is unavailable (HTTP {response.status_code})")
        return response

    def artifact_exists(self, project: str, repository: str, reference: str) -> bool:
        """Whether ``project/repository`` has an artifact ``reference`` (tag or digest)."""
        response = self._request("GET", self.artifact_path(project, repository, reference))
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise RegistryError(f"Harbor {self.name} answered HTTP {response.status_code} for "
                            f"{project}/{repository} {reference}")

    def delete_artifact(self, project: str, repository: str, reference: str) -> bool:
        """Delete the artifact (and every tag on it); False when it was already gone."""
        response = self._request("DELETE", self.artifact_path(project, repository, reference))
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise RegistryError(f"Harbor {self.name} answered HTTP {response.status_code} "
                            f"deleting {project}/{repository} {reference}")


def split_harbor_repository(repository: str) -> tuple[str, str]:
    """``project/repo[/more]`` → (Harbor project, repository inside it)."""
    project, slash, rest = repository.partition("/")
    if not slash or not rest:
        raise ValueError(f"{repository!r} names no Harbor project: expected project/repository")
    return project, rest
