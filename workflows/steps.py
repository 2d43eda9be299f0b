"""Replica plans of the stepped strategies (grayscale, rolling): pure, deterministic arithmetic.

A plan is the list of (new replicas, old replicas) the environment passes through. Equal
load-balancer weights per replica make traffic follow the replica split, so a step of
``new=1, old=10`` sends about 1/11 of the requests to the new version.
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel

from schemas.analysis import AnalysisPolicy, Mode
from schemas.durations import STABLE, STABLE_TOTAL_SECONDS

GATE = "gate"
_STEP = re.compile(r"^(\d+)(%?)$")
# A stable wait is one heartbeating activity per window (a handful of history events however
# long), so the bounds are about people, not history: a day per step, a week per release.
# Longer soaks belong behind a gate step and `promote`. Validate them at the edge too
# (stable_seconds_problem).
MAX_STABLE_SECONDS = STABLE.maximum
MAX_STABLE_TOTAL_SECONDS = STABLE_TOTAL_SECONDS


def stable_seconds_problem(stable_seconds: int, waits: int = 1) -> str | None:
    """Why ``stable_seconds`` per step over ``waits`` stable waits is too long, or None."""
    if stable_seconds > MAX_STABLE_SECONDS:
        return (f"stable time of {stable_seconds}s is over the maximum of {MAX_STABLE_SECONDS}s "
                "per step; use a gate step (`promote`) for longer soaks")
    if stable_seconds * waits > MAX_STABLE_TOTAL_SECONDS:
        return (f"{waits} steps × {stable_seconds}s of stable time is over the maximum of "
                f"{MAX_STABLE_TOTAL_SECONDS}s per release; use fewer steps or gate steps")
    return None


# An analysed stable wait writes about a dozen history events per interval (a health watch
# and a measurement): this many intervals per release stay well inside Temporal's limit.
MAX_ANALYSIS_INTERVALS = 2000


def analysis_ticks_problem(stable_seconds: int, waits: int,
                           policy: AnalysisPolicy | None) -> str | None:
    """Why analysing ``waits`` stable waits of ``stable_seconds`` is too much, or None."""
    if policy is None:
        return None
    intervals = math.ceil(stable_seconds / policy.interval_seconds) * waits
    if intervals > MAX_ANALYSIS_INTERVALS:
        return (f"{waits} steps × {stable_seconds}s of stable time measured every "
                f"{policy.interval_seconds}s is {intervals} analysis intervals, over the "
                f"maximum of {MAX_ANALYSIS_INTERVALS}; measure less often or wait less")
    return None


def analysis_wait_problem(stable_seconds: int, policy: AnalysisPolicy | None,
                          recreate: bool = False) -> str | None:
    """Why ``policy`` would never judge a release with this rollout, or None.

    Metrics are measured inside the stable waits: a stable time of 0 leaves no window, and
    a recreate release stops the old version before the new one serves, so a deciding
    metric that only compares with the baseline could never pass."""
    if policy is None:
        return None
    if stable_seconds <= 0:
        return ("analysis needs a stable wait: with a stable time of 0s no step is judged "
                "and no metric would ever be measured; set --stable (e.g. --stable 60s) for "
                "the environment, or clear its policy")
    if recreate:
        only_baseline = [metric.name for metric in policy.metrics
                         if metric.mode != Mode.DRY_RUN and metric.compares_baseline
                         and metric.max is None and metric.min is None]
        if only_baseline:
            many = len(only_baseline) > 1
            return (f"{', '.join(only_baseline)} only compare{'' if many else 's'} with the "
                    "baseline, and a recreate release stops the old version before the new "
                    "one serves, so there is nothing to compare with: add max or min, or make "
                    f"{'them' if many else 'it'} dry-run")
    return None


class Step(BaseModel):
    """Replica counts after a step; a gate step changes nothing and waits for ``promote``."""

    new: int
    old: int
    gate: bool = False


def parse_step(text: str, replicas: int) -> int | None:
    """New-version replicas for ``"3"`` or ``"50%"``; ``None`` for a gate."""
    text = text.strip().lower()
    if text == GATE:
        return None
    match = _STEP.fullmatch(text)
    if not match:
        raise ValueError(f"invalid grayscale step {text!r}: use a count, a percentage or 'gate'")
    number = int(match.group(1))
    if match.group(2):
        return max(1, math.ceil(replicas * number / 100))
    return min(number, replicas)


def _old_after(new: int, replicas: int, old_replicas: int) -> int:
    # The old version shrinks in proportion as the new one grows.
    return math.floor(old_replicas * (replicas - new) / replicas)


def gray_plan(steps: list[str], replicas: int, old_replicas: int) -> list[Step]:
    """Seed 004's grayscale: a canary beside the full old version, then shift step by step.

    The first counted step is the canary: the old version keeps all its replicas. Every later
    step shrinks the old version in proportion; the plan always ends at (replicas, 0).
    """
    if old_replicas == 0:
        return [Step(new=replicas, old=0)]
    plan: list[Step] = []
    for text in steps:
        new = parse_step(text, replicas)
        if new is None:
            last = plan[-1] if plan else Step(new=0, old=old_replicas)
            plan.append(Step(new=last.new, old=last.old, gate=True))
            continue
        canary = not any(not step.gate for step in plan)
        old = old_replicas if canary and new < replicas else _old_after(new, replicas,
                                                                          old_replicas)
        if plan and not plan[-1].gate and (plan[-1].new, plan[-1].old) == (new, old):
            continue
        plan.append(Step(new=new, old=old))
    if not plan or plan[-1].gate or (plan[-1].new, plan[-1].old) != (replicas, 0):
        plan.append(Step(new=replicas, old=0))
    return plan


def rolling_plan(batch_size: int, replicas: int, old_replicas: int) -> list[Step]:
    """Batches of ``batch_size`` new replicas, the old version shrinking alongside."""
    batch = max(1, batch_size)
    plan = [Step(new=new, old=_old_after(new, replicas, old_replicas))
            for new in range(batch, replicas, batch)]
    plan.append(Step(new=replicas, old=0))
    return plan
