"""HarborClient (Harbor API v2.0) against an HTTP fake of Harbor; ``build delete`` on Harbor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlmodel import select

from catalogue.store import CatalogueError, Store
from catalogue.tables import Application, Build
from integrations.registry.client import RegistryAuthError, RegistryUnavailableError
from integrations.registry.harbor import HarborClient, RegistrySettings
from schemas.enums import AppState
from schemas.settings import Settings
from starter.service.builds import delete_build
from tests.support.harbor_fake import HarborFake, running_harbor

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


@pytest.fixture
def harbor() -> Iterator[HarborFake]:
    with running_harbor() as fake:
        fake.add("library", "team/shop", DIGEST, "1.0", "latest")
        fake.add("library", "cart", OTHER, "2.0")
        yield fake


def client(fake: HarborFake, password: str | None = None) -> HarborClient:
    return HarborClient(fake.url, fake.username, password or fake.password)


def test_delete_artifact_sends_the_exact_call(harbor: HarborFake) -> None:
    with client(harbor) as hub:
        assert hub.artifact_exists("library", "team/shop", "1.0") is True
        assert hub.delete_artifact("library", "team/shop", DIGEST) is True
        assert hub.artifact_exists("library", "team/shop", "latest") is False
    assert [(c.method, c.raw_path, c.user) for c in harbor.calls] == [
        ("GET", "/api/v2.0/projects/library/repositories/team%252Fshop/artifacts/1.0", "admin"),
        ("DELETE", f"/api/v2.0/projects/library/repositories/team%252Fshop/artifacts/{DIGEST}",
         "admin"),
        ("GET", "/api/v2.0/projects/library/repositories/team%252Fshop/artifacts/latest",
         "admin"),
    ]
    assert harbor.has("library", "cart", "2.0")


def test_delete_of_a_missing_artifact_is_false(harbor: HarborFake) -> None:
    with client(harbor) as hub:
        assert hub.delete_artifact("library", "cart", "9.9") is False
        assert hub.delete_artifact("library", "cart", OTHER) is True
        assert hub.delete_artifact("library", "cart", OTHER) is False
    assert [c.raw_path for c in harbor.calls][0] == (
        "/api/v2.0/projects/library/repositories/cart/artifacts/9.9")


def test_wrong_password_is_an_auth_error_without_the_password(harbor: HarborFake) -> None:
    with client(harbor, password="guess-s3cret") as hub, \
            pytest.raises(RegistryAuthError, match="HTTP 401") as error:
        hub.delete_artifact("library", "cart", OTHER)
    assert "guess-s3cret" not in str(error.value) and "guess-s3cret" not in repr(hub)
    assert harbor.calls[-1].user == ""
    assert harbor.has("library", "cart", OTHER)


def test_unreachable_and_invalid_names() -> None:
    with running_harbor() as fake:
        url = fake.url
    with HarborClient(url, "admin", "x", timeout=2) as hub:
        with pytest.raises(RegistryUnavailableError):
            hub.artifact_exists("library", "cart", "1.0")
        with pytest.raises(ValueError):
            hub.delete_artifact("library", "Bad Name", "1.0")


def test_registry_kind_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RegistrySettings().registry_kind == "distribution"
    monkeypatch.setenv("SLIPWAY_REGISTRY_KIND", "harbor")
    assert RegistrySettings().registry_kind == "harbor"


@pytest.mark.parametrize("digest", [DIGEST, ""])
def test_build_delete_uses_the_harbor_api(harbor: HarborFake, tmp_path: Path, digest: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    host = harbor.url.removeprefix("http://")
    with store.session() as session:
        app = Application(name="shop", state=AppState.ONLINE)
        session.add(app)
        session.flush()
        session.add(Build(app_id=app.id or 0, version_label="1.0",
                          image=f"{host}/library/team/shop:1.0", digest=digest))
        session.commit()
    settings = Settings(state_dir=tmp_path, registry=host, registry_insecure=True,
                        credentials={"registry": SecretStr("admin:Harbor12345")})
    monkeypatch.setenv("SLIPWAY_REGISTRY_KIND", "harbor")
    try:
        done = delete_build(store, settings, 1, actor="ops")
        reference = digest or "1.0"
        assert [(c.method, c.raw_path) for c in harbor.calls] == [
            ("DELETE", "/api/v2.0/projects/library/repositories/team%252Fshop/artifacts/"
                       f"{reference}")]
        assert done.startswith("deleted library/team/shop") and done.endswith("record deleted")
        assert not harbor.has("library", "team/shop", DIGEST)
        with store.session() as session:
            assert session.exec(select(Build)).all() == []
    finally:
        store.engine.dispose()


def test_build_delete_on_harbor_keeps_the_record_when_refused(
        harbor: HarborFake, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    host = harbor.url.removeprefix("http://")
    with store.session() as session:
        app = Application(name="shop", state=AppState.ONLINE)
        session.add(app)
        session.flush()
        session.add(Build(app_id=app.id or 0, version_label="2.0",
                          image=f"{host}/library/cart:2.0", digest=OTHER))
        session.commit()
    settings = Settings(state_dir=tmp_path, registry=host, registry_insecure=True,
                        credentials={"registry": SecretStr("admin:wrong")})
    try:
        with pytest.raises(CatalogueError, match="build 1 not deleted") as error:
            delete_build(store, settings, 1, registry_kind="harbor")
        assert "wrong" not in str(error.value)
        with store.session() as session:
            assert len(session.exec(select(Build)).all()) == 1
        assert harbor.has("library", "cart", OTHER)
    finally:
        store.engine.dispose()
