"""The replay gate: every recorded history must replay on this commit's workflow code, or the
change must be one that Worker Versioning keeps away from the runs it would break.

Run by CI after the test suites (``scripts/test.sh``) and, for the golden histories, by
``tests/workflows/test_replay.py``::

    PYTHONPATH=$PWD python -m tests.histories.gate [DIR ...]

DIRs hold more histories to replay, such as those the integration tests of this commit
recorded (``SLIPWAY_RECORDED_HISTORIES``, tests/support/history_export.py). Where a history
comes from decides what it must do:

* ``tests/histories/*.json`` were recorded on this commit's code: every one must replay.
* ``tests/histories/<commit>/`` hold what an earlier build wrote. Runs of auto-upgrade types
  (lanes, the janitor) move to a new build, so theirs must replay; runs of pinned types
  (releases, trains) stay on the build they started on, so theirs are skipped, unless the
  folder is marked ``UNVERSIONED``: recorded before workers were versioned, when every open
  run moved to the new build.
* DIRs given on the command line were recorded on this commit's code: every one must replay.

A failure prints what broke and what to do (:func:`advice`), and the exit status is 1.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer

from workflows.host_drain import HostDrainWorkflow
from workflows.janitor import JanitorWorkflow
from workflows.release import ReleaseWorkflow
from workflows.swimlane import SwimlaneWorkflow
from workflows.teardown import EnvTeardownWorkflow
from workflows.train import TrainWorkflow
from workflows.versioning import BEHAVIOURS, PINNED, behaviour_name

HERE = Path(__file__).resolve().parent
UNVERSIONED_MARK = "UNVERSIONED"
WORKFLOWS: list[type] = [ReleaseWorkflow, TrainWorkflow, SwimlaneWorkflow, JanitorWorkflow,
                         EnvTeardownWorkflow, HostDrainWorkflow]
RECORD = "PYTHONPATH=$PWD python -m tests.histories.record"


class Origin(StrEnum):
    """Who wrote a history, which decides whether this code must replay it."""

    THIS_COMMIT = "recorded on this commit's code"
    UNVERSIONED = "written by an earlier build, before workers were versioned"
    EARLIER_BUILD = "written by an earlier, versioned build"
    INTEGRATION = "recorded by this commit's integration tests"


@dataclass(frozen=True)
class Verdict:
    """One history's outcome: ``replayed``, ``skipped`` (with why) or ``failed`` (with the
    replayer's error)."""

    path: Path
    workflow_type: str
    origin: Origin
    outcome: str
    detail: str = ""


def workflow_type(path: Path) -> str:
    events = json.loads(path.read_text())["events"]
    return str(events[0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def golden_histories() -> list[tuple[Path, Origin]]:
    """Every history of ``tests/histories`` with where it came from."""
    found = [(path, Origin.THIS_COMMIT) for path in sorted(HERE.glob("*.json"))]
    for folder in sorted(p for p in HERE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        origin = (Origin.UNVERSIONED if (folder / UNVERSIONED_MARK).exists()
                  else Origin.EARLIER_BUILD)
        found += [(path, origin) for path in sorted(folder.rglob("*.json"))]
    return found


def recorded_histories(directory: Path) -> list[tuple[Path, Origin]]:
    return [(path, Origin.INTEGRATION) for path in sorted(directory.rglob("*.json"))]


async def check(path: Path, origin: Origin,
                workflows: Sequence[type] | None = None) -> Verdict:
    """Replay ``path`` on ``workflows`` (default: this commit's) unless its origin and its
    type's versioning say that no run like it will ever meet this code."""
    kind = workflow_type(path)
    if kind not in BEHAVIOURS:
        return Verdict(path, kind, origin, "skipped", "not a Slipway workflow type")
    if origin == Origin.EARLIER_BUILD and BEHAVIOURS[kind] == PINNED:
        return Verdict(path, kind, origin, "skipped",
                       f"pinned to build {path.parent.name}: such runs finish on its workers")
    replayer = Replayer(workflows=list(workflows or WORKFLOWS),
                        data_converter=pydantic_data_converter)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return Verdict(path, kind, origin, "replayed")
    return Verdict(path, kind, origin, "failed", _reason(str(result.replay_failure)))


def _reason(failure: str) -> str:
    """The replayer's own words (``[TMPRL1100] Nondeterminism error: …``), not its wrapping."""
    found = re.search(r'message: "(.*?)", source:', failure)
    return found.group(1) if found else failure.splitlines()[0]


def _where(path: Path) -> str:
    try:
        return str(path.relative_to(HERE.parents[1]))
    except ValueError:
        return str(path)


def advice(verdicts: list[Verdict]) -> str:
    """The gate's message: each history that failed, then what to do for each type."""
    failed = [v for v in verdicts if v.outcome == "failed"]
    if not failed:
        return ""
    lines = [f"REPLAY GATE FAILED: this commit's workflow code cannot replay {len(failed)} of "
             f"{len(verdicts)} histories.", ""]
    for verdict in failed:
        lines += [f"  {verdict.workflow_type} ({behaviour_name(BEHAVIOURS[verdict.workflow_type])})"
                  f"  {_where(verdict.path)}  [{verdict.origin}]", f"    {verdict.detail}"]
    lines += ["", "Runs like these that are open when this code is deployed would fail on their "
              "next workflow task. What to do:"]
    for kind in sorted({v.workflow_type for v in failed}):
        origins = {v.origin for v in failed if v.workflow_type == kind}
        if Origin.INTEGRATION in origins:
            lines.append(f"  * {kind}: a history this very code recorded does not replay: the "
                         "workflow is not deterministic (I/O, time, randomness, set order or a "
                         "changed import outside workflow.unsafe.imports_passed_through()); fix "
                         "the code.")
        if BEHAVIOURS[kind] == PINNED and origins <= {Origin.THIS_COMMIT}:
            lines.append(
                f"  * {kind} is pinned (a run stays on the build it started on). Either guard "
                "the change with `if workflow.patched(\"<what-changed>\"): new else: old`, or "
                "ship it as a new build: copy the failing tests/histories/*.json into "
                "tests/histories/<commit in production>/, re-record with "
                f"`{RECORD}`, and when you deploy keep the old build's workers until "
                "`slipway worker versions` shows it drained (docs/operations.md, "
                "\"Upgrading Slipway\").")
        elif origins - {Origin.INTEGRATION}:
            why = ("it auto-upgrades: open runs move to the new build at their next task"
                   if BEHAVIOURS[kind] != PINNED else
                   "these runs started before workers were versioned and move to the new "
                   "build at their next task (once `slipway worker versions` shows no run on "
                   "unversioned workers in production, delete the folders' UNVERSIONED mark: "
                   "pinned types need not replay there any more)")
            lines.append(
                f"  * {kind}: {why}, so no build can hold them. Guard the change with "
                "`if workflow.patched(\"<what-changed>\"): new else: old` (docs/operations.md, "
                "\"Shipping a workflow change\"); re-record with "
                f"`{RECORD}` only after copying the old histories into "
                "tests/histories/<commit in production>/.")
    return "\n".join(lines)


async def gate(extra: list[Path]) -> list[Verdict]:
    """Every golden history and every one under ``extra``, checked."""
    found = golden_histories()
    for directory in extra:
        found += recorded_histories(directory)
    return [await check(path, origin) for path, origin in found]


def main(argv: list[str]) -> int:
    # The SDK core logs every failed replay as a warning; the gate's report says it better.
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")))))
    verdicts = asyncio.run(gate([Path(arg) for arg in argv]))
    counts = {outcome: sum(v.outcome == outcome for v in verdicts)
              for outcome in ("replayed", "skipped", "failed")}
    print(f"replay gate: {counts['replayed']} replayed, {counts['skipped']} skipped, "
          f"{counts['failed']} failed ({len(verdicts)} histories)")
    for verdict in verdicts:
        if verdict.outcome == "skipped":
            print(f"  skipped {_where(verdict.path)}: {verdict.detail}")
    message = advice(verdicts)
    if message:
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
