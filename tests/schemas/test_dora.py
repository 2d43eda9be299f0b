"""The DORA measures as pure functions, each on a small history made by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.dora import (
    deployments,
    failures,
    lead_times,
    per_week,
    report,
    restore_times,
    spread,
    stage_durations,
    weekly_trend,
)
from schemas.insights import ReleaseFact

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
SINCE, UNTIL = T0 - timedelta(days=1), T0 + timedelta(days=13)
DAY = timedelta(days=1)


def fact(n: int, state: str = "succeeded", start: datetime = T0, hours: float = 1,
         **more: object) -> ReleaseFact:
    values: dict[str, object] = {"release_id": n, "app": "shop", "env": "prod@local",
                                 "env_type": "prod", "state": state, "started_at": start,
                                 "finished_at": start + hours * H}
    values.update(more)
    return ReleaseFact.model_validate(values)


def test_median_and_p90_by_nearest_rank() -> None:
    assert spread([]).count == 0 and spread([]).median is None
    assert spread([5.0]).model_dump() == {"count": 1, "median": 5.0, "p90": 5.0}
    # Ten values: median between the 5th and 6th; p90 the 9th.
    assert spread(range(1, 11)).model_dump() == {"count": 10, "median": 5.5, "p90": 9.0}
    # Eleven: p90 is the 10th (ceil(9.9) = 10).
    assert spread(range(1, 12)).p90 == 10.0


def test_deployments_count_succeeded_releases_but_not_returns_to_a_baseline() -> None:
    facts = [fact(1), fact(2, "rolled_back"), fact(3, rollback_to=1, rollback=True),
             fact(4, rollback=True), fact(5, "running", finished_at=None),
             fact(6, start=SINCE - DAY)]  # finished before the window
    assert [f.release_id for f in deployments(facts, SINCE, UNTIL)] == [1, 4]
    assert per_week(2, 14 * 24 * 3600) == 1.0 and per_week(9, 30 * 24 * 3600) == 2.1


def test_lead_time_runs_from_the_commit_else_from_the_change() -> None:
    facts = [fact(1, commit_at=T0 - 3 * H, change_created_at=T0 - H),  # 3h + 1h
             fact(2, change_created_at=T0 - 2 * H),  # no commit time: 2h + 1h
             fact(3),  # no change: no lead time
             fact(4, "failed", change_created_at=T0)]  # not served: none
    assert lead_times(facts, SINCE, UNTIL) == [4 * 3600.0, 3 * 3600.0]


def test_change_failures_and_their_causes() -> None:
    win = timedelta(hours=24)
    facts = [
        fact(1, "rolled_back", error="unhealthy"),
        fact(2, start=T0 + DAY),  # rolled back 2h after it ended → rolled back later
        fact(3, start=T0 + DAY + 3 * H, rollback_to=1, rollback=True),
        fact(4, start=T0 + 2 * DAY),  # a rejected release, then a hotfix → fixed forward
        fact(5, "rejected", start=T0 + 2 * DAY + 2 * H),
        fact(6, start=T0 + 2 * DAY + 4 * H, ref="hotfix/cart"),
        fact(7, start=T0 + 4 * DAY),  # its rollback comes 30h later: not a failure
        fact(8, start=T0 + 4 * DAY + 31 * H, rollback=True),
        fact(9, "failed", start=T0 + 7 * DAY),
    ]
    attempts, found = failures(facts, SINCE, UNTIL, win)
    # 1, 2, 4, 6, 7, 8, 9: the rollback to a baseline (3) and the rejected (5) are not.
    assert attempts == 7
    assert [(f.release_id, f.cause) for f in found] == [
        (1, "rolled back"), (2, "rolled back later"), (4, "fixed forward"), (9, "failed")]
    times, self_restored = restore_times(facts, found)
    # 2 ended at +1h, 3 at +4h: 3h; 4 ended at +1h, the hotfix 6 at +5h: 4h; 9 is not
    # restored yet; 1 restored itself.
    assert times == [3 * 3600.0, 4 * 3600.0] and self_restored == 1


def test_stage_durations() -> None:
    facts = [fact(1, hours=3, built_at=T0 + 0.25 * H, approval_asked_at=T0 + 0.5 * H,
                  approval_decided_at=T0 + 1.5 * H),
             fact(2, "approval_expired", hours=2, approval_asked_at=T0)]
    stages = stage_durations(facts, SINCE, UNTIL)
    assert stages["build"] == [900.0]
    assert stages["approval"] == [3600.0, 7200.0]  # the unanswered one waited to its end
    assert stages["rollout"] == [1.5 * 3600]  # from the approval to the end
    assert stages["total"] == [3 * 3600.0, 2 * 3600.0]


def test_the_weekly_trend_covers_every_week_of_the_window() -> None:
    facts = [fact(1, change_created_at=T0), fact(2, "rolled_back", start=T0 + 8 * DAY)]
    _, found = failures(facts, SINCE, UNTIL, DAY)
    trend = weekly_trend(facts, SINCE, UNTIL, found)
    assert [(p.week, p.deployments, p.failures) for p in trend] == [
        ("2026-W09", 0, 0), ("2026-W10", 1, 0), ("2026-W11", 0, 1)]
    assert trend[1].lead_time_median == 3600.0


def test_the_report_groups_by_app_team_and_env_type() -> None:
    facts = [fact(1, team="a"), fact(2, app="cart", team="", env_type="test", start=T0 + DAY)]
    found = report(facts, SINCE, UNTIL, DAY, {"since": "14d"})
    assert [(g.by, g.name, g.deployments) for g in found.groups] == [
        ("all", "all", 2), ("app", "cart", 1), ("app", "shop", 1), ("team", "(none)", 1),
        ("team", "a", 1), ("env_type", "prod", 1), ("env_type", "test", 1)]
    empty = report([], SINCE, UNTIL, DAY)
    assert [g.name for g in empty.groups] == ["all"]
    assert empty.groups[0].change_failure_rate is None
