"""The verdict of freezes and deploy windows: scopes, recurrences, time zones, chains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from schemas.freezes import FreezeRule, RuleKind, gate

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKEND = FreezeRule(id=1, scope="prod", reason="promotion weekend",
                     starts_at=datetime(2026, 12, 4, 18, 0, tzinfo=SHANGHAI),
                     rrule="FREQ=WEEKLY;BYDAY=FR", duration_seconds=60 * 3600,
                     timezone="Asia/Shanghai")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_weekly_freeze_closes_friday_evening_until_monday_morning_local_time() -> None:
    assert gate([WEEKEND], "prod", "hz", at(2026, 12, 4, 9, 59)).open
    closed = gate([WEEKEND], "prod", "hz", at(2026, 12, 4, 10, 0))
    assert not closed.open and closed.reason == "freeze #1 of prod: promotion weekend"
    assert closed.opens_at == at(2026, 12, 6, 22, 0)  # Monday 06:00 in Shanghai
    assert gate([WEEKEND], "prod", "hz", at(2026, 12, 13, 0, 0)).opens_at == at(2026, 12, 13, 22)
    assert gate([WEEKEND], "test", "hz", at(2026, 12, 5, 0, 0)).open


def test_a_recurrence_keeps_its_local_hour_across_daylight_saving() -> None:
    nightly = FreezeRule(scope="*", starts_at=datetime(2026, 3, 20, 22, 0, tzinfo=BERLIN),
                         rrule="FREQ=DAILY", duration_seconds=3600, timezone="Europe/Berlin")
    # 22:00 in Berlin is 21:00 UTC in winter and 20:00 UTC in summer (from 29 March).
    assert not gate([nightly], "prod", "x", at(2026, 3, 27, 21, 30)).open
    assert not gate([nightly], "prod", "x", at(2026, 3, 30, 20, 30)).open
    assert gate([nightly], "prod", "x", at(2026, 3, 30, 21, 30)).open


def test_scopes_match_type_cluster_environment_or_everything() -> None:
    def rule(scope: str) -> FreezeRule:
        return FreezeRule(scope=scope, starts_at=at(2026, 1, 1), incident=True)
    now = at(2026, 6, 1)
    assert not gate([rule("@hz")], "test", "hz", now).open
    assert gate([rule("@hz")], "test", "sh", now).open
    assert not gate([rule("prod@hz")], "prod", "hz", now).open
    assert gate([rule("prod@hz")], "prod", "sh", now).open
    assert not gate([rule("*")], "dev", "any", now).open


def test_chained_freezes_and_windows_open_at_the_first_free_moment() -> None:
    first = FreezeRule(id=1, scope="prod", starts_at=at(2026, 6, 1, 8), ends_at=at(2026, 6, 1, 12))
    second = FreezeRule(id=2, scope="prod", starts_at=at(2026, 6, 1, 11),
                        ends_at=at(2026, 6, 1, 15))
    window = FreezeRule(kind=RuleKind.WINDOW, scope="prod", starts_at=at(2026, 6, 1, 16),
                        rrule="FREQ=DAILY", duration_seconds=2 * 3600)
    verdict = gate([first, second, window], "prod", "x", at(2026, 6, 1, 9))
    assert verdict.opens_at == at(2026, 6, 1, 16) and verdict.rule_ids == [1]
    assert gate([window], "prod", "x", at(2026, 6, 1, 17)).open
    assert gate([window], "prod", "x", at(2026, 6, 1, 18)).opens_at == at(2026, 6, 2, 16)


def test_an_incident_freeze_has_no_opening_time_until_lifted() -> None:
    incident = FreezeRule(scope="prod", reason="db down", starts_at=at(2026, 6, 1),
                          incident=True, created_by="sre")
    verdict = gate([incident], "prod", "x", at(2026, 6, 2))
    assert not verdict.open and verdict.opens_at is None
    assert verdict.reason == "incident freeze of prod by sre: db down"
    assert gate([incident], "prod", "x", at(2026, 5, 31)).open  # not yet declared


@pytest.mark.parametrize(("fields", "message"), [
    ({"rrule": "FREQ=DAILY"}, "a recurring rule needs a duration"),
    ({"rrule": "FREQ=MINUTELY", "duration_seconds": 60}, "recur at most hourly"),
    ({"rrule": "BYDAY=XX", "duration_seconds": 60}, "bad RRULE"),
    ({"kind": "window"}, "a deploy window needs an end or a recurrence"),
    ({"ends_at": at(2025, 1, 1)}, "the rule ends before it starts"),
    ({"timezone": "Mars/Base"}, "unknown time zone"),
    ({"scope": "a@b@c"}, "give an environment type"),
    ({"starts_at": at(1970, 1, 1)}, "a rule starts in 2000 or later"),
    ({"starts_at": datetime(2026, 1, 1)}, "times must carry a time zone"),
])
def test_bad_rules_say_what_is_wrong(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"scope": "prod", "starts_at": at(2026, 1, 1)}
    values.update(fields)
    with pytest.raises(ValidationError, match=message):
        FreezeRule.model_validate(values)


def test_a_rule_far_in_the_future_is_open_now() -> None:
    later = FreezeRule(scope="prod", starts_at=at(2026, 6, 1) + timedelta(days=30),
                       ends_at=at(2026, 6, 1) + timedelta(days=31))
    assert gate([later], "prod", "x", at(2026, 6, 1)).open
