"""Resolving an image to what never moves: its own repository's digest, else its image ID."""

from __future__ import annotations

import pytest

from integrations.docker.references import own_repo_digest
from schemas.models import ImageSpec

OWN = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
IMAGE_ID = "sha256:" + "c" * 64


@pytest.mark.parametrize(("image", "repo_digests", "expected"), [
    ("127.0.0.1:5000/shop:1.4.2", [f"127.0.0.1:5000/shop@{OWN}"], OWN),
    ("127.0.0.1:5000/shop:1.4.2", [f"127.0.0.1:5001/other@{OTHER}",
                                   f"127.0.0.1:5000/shop@{OWN}"], OWN),
    # Built on the engine, pushed elsewhere under another name: no digest of its own.
    ("slipway/lt:v1", [f"127.0.0.1:5000/lt@{OTHER}"], ""),
    ("nginx:1.27", [f"nginx@{OWN}"], OWN),
    ("docker.io/library/nginx:1.27", [f"nginx@{OWN}"], OWN),
    ("127.0.0.1:5000/shop@" + OWN, [f"127.0.0.1:5000/shop@{OWN}"], OWN),
    ("shop:v1", [], ""),
])
def test_only_the_references_own_repository_counts(image: str, repo_digests: list[str],
                                                    expected: str) -> None:
    assert own_repo_digest(image, repo_digests) == expected


def test_an_engine_only_image_runs_by_its_image_id() -> None:
    digest = own_repo_digest("slipway/lt:v1", [f"127.0.0.1:5000/lt@{OTHER}"]) or IMAGE_ID
    assert ImageSpec(image="slipway/lt:v1", digest=digest).run_ref == IMAGE_ID
