"""``slipway host list | cordon | uncordon``: hosts come from SLIPWAY_CLUSTERS, their state
from the catalogue; bad input is refused with the hosts there are, and nothing is written."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from catalogue.hosts import HostState, cordoned_hosts
from catalogue.store import Store
from catalogue.tables import AuditEvent
from schemas.settings import get_settings
from tests.support.cli import ok, run

CLUSTERS = {
    "fleet": {"hosts": [
        {"name": "h1", "engine": "unix:///run/h1.sock", "address": "10.0.0.11", "capacity": 4},
        {"name": "h2", "engine": "unix:///run/h2.sock", "address": "10.0.0.12",
         "labels": {"zone": "b"}}]},
    "local": {},
}


@pytest.fixture
def fleet(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SLIPWAY_CLUSTERS", json.dumps(CLUSTERS))
    get_settings.cache_clear()
    return store


def flat(text: str) -> str:
    """The words of the output, table rules and borders left out."""
    return " ".join(word for word in text.split() if not set(word) <= set("│┃━─┏┓┗┛┡┩└┘┳┻╇┼"))


def test_cordon_takes_a_host_out_of_placement_and_uncordon_puts_it_back(fleet: Store) -> None:
    listed = flat(ok("host list").output)
    assert "fleet h1 10.0.0.11 4" in listed and "zone=b" in listed
    assert "local h1 127.0.0.1 no limit" in listed and "cordoned" not in listed
    done = ok("host cordon h2 --reason 'disk replacement'")
    assert "cordoned h2 (fleet)" in done.output
    assert cordoned_hosts(fleet, "fleet") == {"h2"}
    assert "cordoned: disk replacement (tester," in flat(ok("host list").output)
    ok("host uncordon h2")
    assert cordoned_hosts(fleet, "fleet") == frozenset()
    with fleet.session() as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert actions == ["host.cordoned", "host.uncordoned"]


def test_bad_hosts_and_missing_reasons_are_refused_and_write_nothing(fleet: Store) -> None:
    unknown = run("host cordon h9 --reason x")
    assert unknown.exit_code == 1
    assert ("no Docker host 'h9': the hosts are h1 (fleet), h2 (fleet), h1 (local)"
            in flat(unknown.output))
    ambiguous = run("host cordon h1 --reason x")
    assert ambiguous.exit_code == 1 and "say which with --cluster" in ambiguous.output
    blank = run("host cordon h2 --reason ' '")
    assert blank.exit_code == 1 and "needs a reason" in blank.output
    assert run("host cordon h2").exit_code == 2  # --reason is required
    with fleet.session() as session:
        assert session.exec(select(HostState)).all() == []
    assert "cordoned h1 (local)" in ok("host cordon h1 --cluster local --reason x").output
