"""RegistryClient against a real docker-registry (htpasswd auth), plus reference parsing.

Images are pushed with plain v2 API calls (two blobs and a manifest), so no dockerd is needed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import tarfile

import httpx
import pytest

from integrations.registry.client import (
    ImageNotFoundError,
    RegistryAuthError,
    RegistryClient,
    RegistryUnavailableError,
    split_image_ref,
)
from tests.support.registry import RegistryServer

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(content: bytes) -> tuple[bytes, str]:
    """A gzipped tar with one file; returns (blob, diff id of the uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("app/version.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0), _sha256(raw.getvalue())


def push_image(server: RegistryServer, repository: str, tag: str, oci: bool = False) -> str:
    """Push a minimal one-layer image through the v2 API; returns the manifest digest."""
    layer, diff_id = _layer(f"{repository}:{tag}".encode())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    with httpx.Client(
        base_url=server.url, auth=(server.username, server.password), timeout=10
    ) as http:
        for blob in (config, layer):
            start = http.post(f"/v2/{repository}/blobs/uploads/")
            assert start.status_code == 202, start.text
            # Location carries the upload state in its query: add the digest, keep the rest
            # (httpx's params= would replace that query).
            location = httpx.URL(start.headers["Location"])
            done = http.put(
                location.copy_merge_params({"digest": _sha256(blob)}),
                content=blob,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert done.status_code == 201, done.text
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json"
                    if oci
                    else "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": _sha256(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"
                        if oci
                        else "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer),
                        "digest": _sha256(layer),
                    }
                ],
            }
        ).encode()
        put = http.put(
            f"/v2/{repository}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST if oci else DOCKER_MANIFEST},
        )
        assert put.status_code == 201, put.text
        assert put.headers["Docker-Content-Digest"] == _sha256(manifest)
    return _sha256(manifest)


def client_for(server: RegistryServer, password: str | None = None) -> RegistryClient:
    return RegistryClient(
        server.url, server.username, server.password if password is None else password
    )


@pytest.mark.integration
def test_resolve_exists_delete_round_trip(registry_server: RegistryServer) -> None:
    digest = push_image(registry_server, "slipway/shop", "1.4.2")
    with client_for(registry_server) as registry:
        assert registry.resolve("slipway/shop", "1.4.2") == digest
        assert registry.resolve("slipway/shop", digest) == digest
        assert registry.exists("slipway/shop", "1.4.2")
        assert registry.exists("slipway/shop", digest)
        assert registry.tags("slipway/shop") == ["1.4.2"]

        assert registry.delete("slipway/shop", digest) is True
        with pytest.raises(ImageNotFoundError, match=r"slipway/shop:1\.4\.2"):
            registry.resolve("slipway/shop", "1.4.2")
        assert not registry.exists("slipway/shop", digest)
        assert registry.delete("slipway/shop", digest) is False
        assert registry.tags("slipway/shop") == []
        with pytest.raises(ValueError, match="digest"):
            registry.delete("slipway/shop", "1.4.2")


@pytest.mark.integration
def test_oci_manifest_and_several_tags(registry_server: RegistryServer) -> None:
    digest = push_image(registry_server, "slipway/oci-app", "v1", oci=True)
    other = push_image(registry_server, "slipway/oci-app", "v2", oci=True)
    with client_for(registry_server) as registry:
        assert registry.resolve("slipway/oci-app", "v1") == digest
        assert registry.resolve("slipway/oci-app", "v2") == other
        assert sorted(registry.tags("slipway/oci-app")) == ["v1", "v2"]
        assert registry.tags("slipway/never-pushed") == []
        assert not registry.exists("slipway/oci-app", "v3")


@pytest.mark.integration
def test_wrong_password_is_an_auth_error(registry_server: RegistryServer) -> None:
    push_image(registry_server, "slipway/auth", "1")
    wrong = "not-the-password-" + registry_server.password
    with client_for(registry_server, password=wrong) as registry:
        with pytest.raises(RegistryAuthError) as info:
            registry.resolve("slipway/auth", "1")
        assert registry_server.host in str(info.value)
        assert wrong not in str(info.value) and wrong not in repr(registry)
        with pytest.raises(RegistryAuthError):
            registry.delete("slipway/auth", "sha256:" + "0" * 64)


@pytest.mark.integration
def test_unknown_image_names_repository_and_tag(registry_server: RegistryServer) -> None:
    with client_for(registry_server) as registry:
        with pytest.raises(ImageNotFoundError, match="slipway/ghost:9.9"):
            registry.resolve("slipway/ghost", "9.9")
        registry.ping()


def test_unreachable_registry_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        registry = RegistryClient(f"http://127.0.0.1:{port}", "u", "p", timeout=2)
        with registry, pytest.raises(RegistryUnavailableError, match=f"127.0.0.1:{port}"):
            registry.resolve("slipway/shop", "1")


def test_bearer_challenge_and_tag_pages() -> None:
    """Harbor-style token auth and Link pagination, over a transport that mimics them."""
    seen_scopes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/service/token":
            assert request.headers["Authorization"].startswith("Basic ")
            seen_scopes.append(request.url.params["scope"])
            return httpx.Response(200, json={"token": "tok"})
        if request.headers.get("Authorization") != "Bearer tok":
            challenge = 'Bearer realm="https://harbor.test/service/token",service="harbor-registry"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if request.url.params.get("last") == "b":
            return httpx.Response(200, json={"name": "p/app", "tags": ["c"]})
        return httpx.Response(
            200,
            json={"name": "p/app", "tags": ["a", "b"]},
            headers={"Link": '</v2/p/app/tags/list?n=2&last=b>; rel="next"'},
        )

    registry = RegistryClient(
        "https://harbor.test", "robot", "secret", transport=httpx.MockTransport(handler)
    )
    assert registry.tags("p/app") == ["a", "b", "c"]
    assert seen_scopes == ["repository:p/app:pull"]  # token cached for the second page
    assert "secret" not in repr(registry)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("127.0.0.1:5000/shop:1.4.2", ("127.0.0.1:5000", "shop", "1.4.2")),
        ("harbor.example.com/team/shop", ("harbor.example.com", "team/shop", "latest")),
        ("localhost/shop:v2", ("localhost", "shop", "v2")),
        ("busybox", ("docker.io", "library/busybox", "latest")),
        ("team/shop:1", ("docker.io", "team/shop", "1")),
        (
            "reg.local:443/a/b:t@sha256:" + "a" * 64,
            ("reg.local:443", "a/b", "sha256:" + "a" * 64),
        ),
    ],
)
def test_split_image_ref(ref: str, expected: tuple[str, str, str]) -> None:
    assert split_image_ref(ref) == expected


@pytest.mark.parametrize("ref", ["", "Shop:1", "shop:bad tag", "shop@sha256:short"])
def test_split_image_ref_rejects_garbage(ref: str) -> None:
    with pytest.raises(ValueError):
        split_image_ref(ref)
