"""`Registry` integration: resolve tags to digests and delete images over the OCI v2 API.

Speaks the OCI distribution v2 API that Debian's `docker-registry`, Harbor and most other
registries serve. Credentials go as HTTP basic auth; when the registry answers with a Bearer
challenge (Harbor, token-auth registries) the client fetches a scoped token from the realm with
the same credentials. The password never appears in messages, reprs or exceptions.

Harbor's own API lives beside this module, in :mod:`integrations.registry.harbor`.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

import httpx

# Every manifest kind we can resolve; without schema1, so no registry converts on the fly.
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)

DEFAULT_REGISTRY = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}$")
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_MAX_TAG_PAGES = 1000


class RegistryError(RuntimeError):
    """The registry answered something we can't use."""


class RegistryAuthError(RegistryError):
    """The registry rejected the credentials (401) or the permission (403)."""


class ImageNotFoundError(RegistryError):
    """The repository or the tag/digest does not exist in the registry."""


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached or is temporarily failing; worth retrying."""


def is_digest(reference: str) -> bool:
    return bool(_DIGEST_RE.fullmatch(reference))


def split_image_ref(ref: str) -> tuple[str, str, str]:
    """Split ``host[:port]/repo[:tag][@digest]`` into (registry host, repository, tag or digest).

    Follows Docker's rules: the first component is a registry only if it has a ``.`` or ``:``
    or is ``localhost``; otherwise the registry is docker.io (single names get ``library/``).
    The tag defaults to ``latest``; a digest wins over a tag.
    """
    # No trimming: a reference with stray whitespace is refused, not repaired.
    if not ref or any(ch.isspace() for ch in ref):
        raise ValueError(f"invalid image reference {ref!r}")
    name, _, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DEFAULT_REGISTRY, name
    last = path.rsplit("/", 1)[-1]
    tag = "latest"
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if host == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    reference = digest or tag
    if not _REPOSITORY_RE.fullmatch(path):
        raise ValueError(f"invalid repository {path!r} in image reference {ref!r}")
    if not (is_digest(reference) if digest else _TAG_RE.fullmatch(reference)):
        raise ValueError(f"invalid tag or digest {reference!r} in image reference {ref!r}")
    return host, path, reference


def _redact(url: str) -> str:
    """A URL without user info, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


class RegistryClient:
    """Client for one registry's v2 API (``base_url`` like ``https://harbor.example.com``)."""

    def __init__(
        self,
        base_url: str,
        username: str = "",
        password: str = "",
        verify: bool = True,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        # Shown in every message instead of the URL, so user info in it never leaks.
        self.name = _redact(self.base_url)
        self._auth = httpx.BasicAuth(username, password) if username else None
        self._tokens: dict[str, str] = {}  # bearer token per scope, for token-auth registries
        self._http = httpx.Client(
            base_url=self.base_url,
            verify=verify,
            timeout=timeout,
            transport=transport,
            follow_redirects=True,  # reads may redirect to storage
        )

    def __repr__(self) -> str:
        return f"RegistryClient({self.name!r}, username={self.username!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- transport

    def _request(
        self,
        method: str,
        url: str,
        *,
        scope: str | None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request, answering a Bearer challenge once; map transport failures."""
        headers = dict(headers or {})
        token = self._tokens.get(scope or "")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self._send(method, url, headers, basic=token is None)
        if response.status_code == 401:
            scheme, params = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
            if scheme == "bearer" and "realm" in params:
                token = self._fetch_token(params, scope)
                headers["Authorization"] = f"Bearer {token}"
                response = self._send(method, url, headers, basic=False)
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"registry {self.name} refused {method} {url} for user "
                f"{self.username or '(anonymous)'} (HTTP {response.status_code})"
            )
        if response.status_code in (502, 503, 504):
            raise RegistryUnavailableError(
                f"registry {self.name} is unavailable (HTTP {response.status_code})"
            )
        return response

    def _send(
        self, method: str, url: str, headers: dict[str, str], *, basic: bool
    ) -> httpx.Response:
        try:
            return self._http.request(
                method, url, headers=headers, auth=self._auth if basic else None
            )
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(
                f"registry {self.name} is unreachable: {type(exc).__name__}: {exc}"
            ) from exc

    def _fetch_token(self, challenge: dict[str, str], scope: str | None) -> str:
        params = {"service": challenge["service"]} if "service" in challenge else {}
        if scope:
            params["scope"] = scope
        try:
            response = self._http.get(challenge["realm"], params=params, auth=self._auth)
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(
                f"token service of registry {self.name} is unreachable: {exc}"
            ) from exc
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"registry {self.name} refused a token for user "
                f"{self.username or '(anonymous)'} (HTTP {response.status_code})"
            )
        if response.status_code != 200:
            raise RegistryError(
                f"token service of registry {self.name} answered HTTP {response.status_code}"
            )
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service of registry {self.name} returned no token")
        self._tokens[scope or ""] = token
        return token

    # ---------------------------------------------------------------------- API

    def ping(self) -> None:
        """Check that the registry answers and accepts the credentials."""
        response = self._request("GET", "/v2/", scope=None)
        if response.status_code != 200:
            raise RegistryError(f"registry {self.name} answered HTTP {response.status_code}")

    def _manifest(self, method: str, repository: str, reference: str) -> httpx.Response:
        _check_repository(repository)
        if not (is_digest(reference) or _TAG_RE.fullmatch(reference)):
            raise ValueError(f"invalid tag or digest {reference!r}")
        return self._request(
            method,
            f"/v2/{repository}/manifests/{reference}",
            scope=f"repository:{repository}:pull",
            headers={"Accept": MANIFEST_ACCEPT},
        )

    def resolve(self, repository: str, tag: str) -> str:
        """The manifest digest (``sha256:…``) that ``repository:tag`` points to now."""
        response = self._manifest("HEAD", repository, tag)
        if response.status_code == 200 and response.headers.get("Docker-Content-Digest"):
            return response.headers["Docker-Content-Digest"]
        if response.status_code == 200:
            # Some registries omit the header on HEAD: the digest is the hash of the body.
            response = self._manifest("GET", repository, tag)
            if response.status_code == 200:
                return response.headers.get("Docker-Content-Digest") or (
                    "sha256:" + hashlib.sha256(response.content).hexdigest()
                )
        if response.status_code == 404:
            separator = "@" if is_digest(tag) else ":"
            raise ImageNotFoundError(
                f"image {repository}{separator}{tag} not found in registry {self.name}"
            )
        raise RegistryError(
            f"registry {self.name} answered HTTP {response.status_code} for {repository}:{tag}"
        )

    def exists(self, repository: str, reference: str) -> bool:
        """Whether a manifest exists for ``reference`` (a tag or a digest)."""
        response = self._manifest("HEAD", repository, reference)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise RegistryError(
            f"registry {self.name} answered HTTP {response.status_code} for "
            f"{repository} {reference}"
        )

    def delete(self, repository: str, digest: str) -> bool:
        """Delete the manifest ``digest`` (and the tags on it). False if it was already gone.

        The v2 API deletes by digest only: resolve a tag first. Blobs are reclaimed later by
        the registry's garbage collection.
        """
        _check_repository(repository)
        if not is_digest(digest):
            raise ValueError(f"delete needs a digest (sha256:…), got {digest!r}")
        response = self._request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scope=f"repository:{repository}:delete",
        )
        if response.status_code in (200, 202):
            return True
        if response.status_code == 404:
            return False
        if response.status_code == 405:
            raise RegistryError(
                f"registry {self.name} does not allow deletes "
                "(docker-registry: set storage.delete.enabled: true)"
            )
        raise RegistryError(
            f"registry {self.name} answered HTTP {response.status_code} deleting "
            f"{repository}@{digest}"
        )

    def tags(self, repository: str) -> list[str]:
        """All tags of ``repository`` (following pagination); [] for an unknown repository."""
        _check_repository(repository)
        url: str | None = f"/v2/{repository}/tags/list?n=1000"
        found: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            if url is None:
                break
            response = self._request("GET", url, scope=f"repository:{repository}:pull")
            if response.status_code == 404:
                return []
            if response.status_code != 200:
                raise RegistryError(
                    f"registry {self.name} answered HTTP {response.status_code} listing "
                    f"tags of {repository}"
                )
            # docker-registry answers "tags": null once every manifest is deleted.
            found.extend(response.json().get("tags") or [])
            match = _LINK_NEXT_RE.search(response.headers.get("Link", ""))
            url = match.group(1) if match else None
        return found


def _check_repository(repository: str) -> None:
    if not _REPOSITORY_RE.fullmatch(repository):
        raise ValueError(f"invalid repository name {repository!r}")
