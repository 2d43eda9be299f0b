"""The embedded ``Builder``: ``docker build`` on a Docker engine, then push to the registry.

The source is a local directory (built as it is, or at a git ref when one is given) or a git
URL (cloned at the ref). The base image and the version label reach the Dockerfile as the
build args ``BASE_IMAGE`` and ``VERSION``.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError

from integrations.build_output import LOG_TAIL_LINES, BuildFailedError
from integrations.protocols import Progress
from schemas.models import ImageSpec
from schemas.sources import (
    SourceRefused,
    check_git_url,
    check_local_source,
    check_ref,
    is_git_url,
)


class SourceError(Exception):
    """The source directory or git ref does not exist."""


# Only these transports may be used, whatever a URL or a submodule asks for: never ext::
# (runs a command), never file:: for a git URL.
_GIT_PROTOCOLS = ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always",
                  "-c", "protocol.ssh.allow=always"]


def _git(args: list[str], timeout: float, *, local: bool = False) -> None:
    protocols = [*_GIT_PROTOCOLS, "-c", "protocol.file.allow=always"] if local else _GIT_PROTOCOLS
    subprocess.run(["git", *protocols, *args], check=True, capture_output=True, text=True,
                   timeout=timeout)


@contextmanager
def checkout(source: str, ref: str | None, roots: Sequence[Path]) -> Iterator[Path]:
    """Yield a directory holding the source at ``ref`` (the directory itself if no ref).

    The source and ref are checked again here, whatever checked them before: this is where
    they reach git, on the host that holds the Docker socket and the credentials.
    """
    try:
        if ref is not None and ref != "":
            check_ref(ref)
        local = not is_git_url(source)
        where = str(check_local_source(source, roots)) if local else check_git_url(source)
    except SourceRefused as refused:
        raise SourceError(str(refused)) from None
    if local and not ref:
        path = Path(where)
        if not (path / "Dockerfile").is_file():
            raise SourceError(f"{source} has no Dockerfile")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="slipway-src-") as tmp:
        try:
            # "--" ends the options: nothing positional can be read as one.
            _git(["clone", "--quiet", "--", where, tmp], timeout=600, local=local)
            if ref:
                _git(["-C", tmp, "checkout", "--quiet", ref, "--"], timeout=60,
                     local=local)
        except subprocess.CalledProcessError as error:
            raise SourceError(f"cannot check out {source} at {ref or 'HEAD'}: "
                              f"{error.stderr.strip()}") from error
        yield Path(tmp)


class DockerBuilder:
    """Builds images with one Docker engine and pushes them when a registry is set."""

    def __init__(self, engine: str, registry: str = "", base_image: str = "",
                 registry_auth: dict[str, str] | None = None,
                 source_roots: Sequence[Path] = ()) -> None:
        self.engine = engine
        self.source_roots = list(source_roots)
        self.registry = registry
        self.base_image = base_image
        self.registry_auth = registry_auth
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.engine, timeout=600)
        return self._client

    def image_name(self, app: str, version_label: str) -> str:
        repository = f"{self.registry}/{app}" if self.registry else f"slipway/{app}"
        return f"{repository}:{version_label}"

    def build(self, app: str, source: str, ref: str | None, version_label: str,
              progress: Progress | None = None) -> ImageSpec:
        """Build, tag and (with a registry) push; return the image and its digest."""
        image = self.image_name(app, version_label)
        build_args = {"VERSION": version_label}
        if self.base_image:
            build_args["BASE_IMAGE"] = self.base_image
        with checkout(source, ref, self.source_roots) as context:
            self._stream(
                self.client.api.build(path=str(context), tag=image, buildargs=build_args,
                                      rm=True, forcerm=True, decode=True),
                progress, f"build of {image}",
            )
        built = self.client.images.get(image)
        if not self.registry:
            return ImageSpec(image=image, digest=built.id)
        repository, tag = image.rsplit(":", 1)
        push_log = self._stream(
            self.client.api.push(repository, tag=tag, auth_config=self.registry_auth,
                                 stream=True, decode=True),
            progress, f"push of {image}",
        )
        digest = next((line["aux"]["Digest"] for line in push_log
                       if isinstance(line.get("aux"), dict) and "Digest" in line["aux"]), "")
        return ImageSpec(image=image, digest=digest)

    @staticmethod
    def _stream(lines: Iterator[dict[str, Any]], progress: Progress | None,
                what: str) -> list[dict[str, Any]]:
        """Consume a build/push stream, reporting progress; raise with the log tail on error."""
        seen: list[dict[str, Any]] = []
        try:
            for line in lines:
                seen.append(line)
                text = (line.get("stream") or line.get("status") or "").strip()
                if text and progress:
                    progress(text)
                if "error" in line or "errorDetail" in line:
                    tail = "".join(str(entry.get("stream", "")) for entry in seen[-LOG_TAIL_LINES:])
                    raise BuildFailedError(f"{what} failed: {line.get('error')}\n{tail.strip()}")
        except APIError as error:
            raise BuildFailedError(f"{what} failed: {error.explanation}") from error
        return seen
