"""Image references and resource quantities as the Docker engine wants them."""

from __future__ import annotations

import re


def _repository(reference: str) -> str:
    """``host/path`` of a reference, without tag or digest, Docker Hub's defaults removed."""
    name = reference.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    if ":" in last:
        name = f"{head}{slash}{last.rsplit(':', 1)[0]}"
    for default in ("docker.io/", "index.docker.io/"):
        name = name.removeprefix(default)
    return name.removeprefix("library/")


def own_repo_digest(image: str, repo_digests: list[str]) -> str:
    """The manifest digest recorded for ``image``'s own repository, or "".

    An image ID also carries the digests it was pushed under elsewhere (the same build
    pushed to a test registry, say); a digest of another repository cannot be pulled or run
    under this name, so only the reference's own repository counts.
    """
    wanted = _repository(image)
    for entry in repo_digests:
        repository, at, digest = entry.partition("@")
        if at and _repository(repository) == wanted:
            return digest
    return ""


def docker_memory(memory: str) -> str | None:
    """Kubernetes-style ``256Mi``/``1Gi`` to Docker's ``256m``/``1g``."""
    if not memory:
        return None
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|m|g)?", memory)
    if not match:
        raise ValueError(f"invalid memory quantity {memory!r}")
    number, unit = match.groups()
    return number + {"Ki": "k", "Mi": "m", "Gi": "g"}.get(unit or "", (unit or "").lower())


def nano_cpus(cpu: str) -> int | None:
    """``0.5`` or ``500m`` CPUs as Docker nano-CPUs."""
    if not cpu:
        return None
    if cpu.endswith("m"):
        return int(float(cpu[:-1]) * 1_000_000)
    return int(float(cpu) * 1_000_000_000)
