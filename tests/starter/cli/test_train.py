"""``slipway train``: what a person can get wrong is refused before anything starts."""

from __future__ import annotations

import pytest
from sqlmodel import select

from catalogue.store import Store
from catalogue.tables import Train
from tests.support.cli import ok, run


@pytest.fixture
def apps(store: Store) -> Store:
    ok("app register shop --ready --approver lead --approver ana")
    ok("app register cart --ready --approver lead")
    ok("app register mail --ready --approver bob")
    for app in ("shop", "cart", "mail"):
        ok(f"env add {app} prod --strategy recreate --approval required")
    return store


@pytest.mark.parametrize(("words", "message"), [
    ("train create Payday --app shop@prod --app cart@prod", "train name 'Payday'"),
    ("train create payday --app shop@prod", "at least two applications"),
    ("train create payday --app shop@prod --app shop@prod", "appears twice"),
    ("train create payday --app shop --app cart@prod", "write it as APP@ENV"),
    ("train create payday --app shop@prod --app cart@prod --order shop",
     "must name every app of the train once"),
    ("train create payday --app shop@prod --app cart@prod --after shop:mail",
     "shop waits for mail, which the train does not carry"),
    ("train create payday --app shop@prod --app cart@prod --after shop:cart --after cart:shop",
     "the train's order has a cycle"),
    ("train create payday --app shop@prod --app nope@prod --image shop=x:1", "nope"),
    ("train create payday --app shop@prod --app cart@staging --image shop=x:1",
     "no environment 'staging'"),
    ("train create payday --app shop@prod --app cart@prod --image mail=x:1",
     "--image for mail, which the train does not carry"),
    ("train create payday --app shop@prod --app cart@prod",
     "application 'shop' has no build source: give --image shop=REF"),
    ("train create payday --app shop@prod --app mail@prod --image shop=x:1 --image mail=x:1",
     "no approver approves every application of this train"),
])
def test_bad_trains_are_refused_with_the_reason(apps: Store, words: str, message: str) -> None:
    result = run(words)
    assert result.exit_code == 1 and message in result.output, result.output
    with apps.session() as session:
        assert session.exec(select(Train)).all() == []


def test_rolling_back_a_train_that_never_ran_says_so(apps: Store) -> None:
    result = run("train rollback payday")
    assert result.exit_code == 1 and "no train called 'payday'" in result.output
    assert "no trains yet" in ok("train list").stdout
