"""How each workflow type moves between worker builds (Temporal's Worker Versioning), and why.

Each ``@workflow.defn`` names its behaviour from here; the replay gate
(``tests/histories/gate.py``) reads :data:`BEHAVIOURS` to say what a failed replay means.

* **Pinned** runs stay on the build they started on: a change to their code needs no patch,
  but the old build's workers run until its pinned runs end (`slipway worker versions`
  shows the build ``draining``, then ``drained``). For runs that end within days at most.
* **Auto-upgrade** runs move to the current build at their next workflow task: they live
  too long to keep old workers for them, so every change to their command sequence is
  guarded with ``workflow.patched`` / ``deprecate_patch`` and proven by the golden
  histories (docs/operations.md, "Shipping a workflow change").

Runs started before workers were versioned move to the current build whatever their type,
as auto-upgrade ones do: histories of that era (``tests/histories/<commit>/`` folders marked
``UNVERSIONED``) must replay on every later build.
"""

from __future__ import annotations

from temporalio.common import VersioningBehavior

PINNED = VersioningBehavior.PINNED
AUTO_UPGRADE = VersioningBehavior.AUTO_UPGRADE

# A release waits hours to a day for approval and days for a freeze, then ends: short enough
# to finish on the code that planned its rollout and its undo stack.
RELEASE = PINNED
# A train runs its members as child releases (they inherit its build) and ends with them.
TRAIN = PINNED
# An environment's teardown and a host's drain take minutes (a lost host's drain at most an
# hour of waiting on releases): finished on the build they started on.
TEARDOWN = PINNED
HOST_DRAIN = PINNED
# A lane lives for a week or more (idle TTL, then grace) and continues as new: it must follow
# the current build, so its code changes only behind patches.
SWIMLANE = AUTO_UPGRADE
# The janitor runs from a Schedule every hour: each run takes the current build.
JANITOR = AUTO_UPGRADE

BEHAVIOURS: dict[str, VersioningBehavior] = {
    "ReleaseWorkflow": RELEASE,
    "TrainWorkflow": TRAIN,
    "EnvTeardownWorkflow": TEARDOWN,
    "HostDrainWorkflow": HOST_DRAIN,
    "SwimlaneWorkflow": SWIMLANE,
    "JanitorWorkflow": JANITOR,
}


def behaviour_name(behaviour: VersioningBehavior) -> str:
    """``pinned`` / ``auto-upgrade``, as `slipway worker versions` and the gate say it."""
    return "pinned" if behaviour == PINNED else "auto-upgrade"
