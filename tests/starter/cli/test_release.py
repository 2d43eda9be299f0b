"""``slipway release`` refuses bad input before anything starts or is written."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlmodel import select

from catalogue.store import Store
from catalogue.tables import AuditEvent, Release
from tests.support.cli import ok, run

BAD_RELEASES = [
    pytest.param("release nope prod", ["unknown application 'nope'"], id="unknown-app"),
    pytest.param("release shop staging", ["no environment 'staging'", "slipway env add"],
                 id="unknown-env"),
    pytest.param("release gone prod", ["'gone' is offline", "never released again"],
                 id="offline-app"),
    pytest.param("release fresh prod", ["pending_review", "slipway app ready fresh"],
                 id="unreviewed-app"),
    pytest.param("release shop prod --image a:1 --ref main", ["either --image", "not both"],
                 id="image-and-ref"),
    pytest.param("release shop prod", ["no build source", "--image"], id="no-source"),
]


def rows(store: Store) -> tuple[int, int]:
    with store.session() as session:
        return tuple(session.exec(select(func.count()).select_from(table)).one()  # type: ignore[return-value]
                     for table in (Release, AuditEvent))


@pytest.mark.parametrize(("command", "words"), BAD_RELEASES)
def test_bad_release_is_refused_with_one_line(populated: Store, command: str,
                                              words: list[str]) -> None:
    ok("app register fresh")
    before = rows(populated)
    result = run(command)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in lines[0]
    assert rows(populated) == before


def test_release_without_temporal_says_how_to_start_it(
    populated: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from schemas.settings import get_settings

    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", "127.0.0.1:9")  # nothing listens there
    get_settings.cache_clear()
    before = rows(populated)
    result = run("release shop prod --image slipway/busybox:local")
    assert result.exit_code == 1
    assert "cannot reach Temporal at 127.0.0.1:9" in result.stderr
    assert "slipway up" in result.stderr
    assert rows(populated) == before
