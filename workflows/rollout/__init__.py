"""How a release replaces one version by another: one module per strategy.

``base`` holds the shared building blocks, ``recreate`` and ``stepped`` (gray, rolling) the
strategies, ``switch`` the fast rollback, ``analysis`` the stable wait judged by metrics,
``host`` the small interface a strategy needs from the running workflow.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.enums import Strategy
    from schemas.models import ImageSpec, ReleasePlan
    from workflows.rollout.base import Rollout, cause_of
    from workflows.rollout.host import RolloutHost, Undo
    from workflows.rollout.recreate import Recreate
    from workflows.rollout.stepped import Stepped
    from workflows.rollout.switch import Switch

__all__ = ["Rollout", "RolloutHost", "Undo", "cause_of", "rollout_for"]


def rollout_for(host: RolloutHost, plan: ReleasePlan, target: ImageSpec) -> Rollout:
    """The strategy the environment asks for (a fast rollback switches in one step)."""
    if plan.fast_rollback:
        return Switch(host, plan, target)
    if plan.strategy == Strategy.RECREATE:
        return Recreate(host, plan, target)
    return Stepped(host, plan, target)
