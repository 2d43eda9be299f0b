"""The replay gate on the golden histories (tests/histories/gate.py): each one replays on
today's workflow code, or is one that Worker Versioning keeps away from it.

A failure prints the gate's message: what broke and what to do (guard the change with
``workflow.patched``, or, for a pinned workflow type, ship it as a new build). See
docs/operations.md, "Shipping a workflow change" and "Upgrading Slipway".
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.histories import gate
from tests.support.drill_build import IncompatibleReleaseWorkflow
from workflows.janitor import JanitorWorkflow
from workflows.versioning import AUTO_UPGRADE, BEHAVIOURS

HISTORIES = gate.golden_histories()


def test_every_workflow_has_a_golden_history_or_is_pinned() -> None:
    recorded = {gate.workflow_type(path) for path, _origin in HISTORIES}
    assert recorded == {"ReleaseWorkflow", "SwimlaneWorkflow", "JanitorWorkflow", "TrainWorkflow"}
    # Auto-upgrade types live across builds: only histories can prove a change safe for them.
    assert {kind for kind, behaviour in BEHAVIOURS.items()
            if behaviour == AUTO_UPGRADE} <= recorded


@pytest.mark.parametrize(("path", "origin"), HISTORIES,
                         ids=[p.parent.name + "/" + p.stem for p, _o in HISTORIES])
async def test_golden_history_passes_the_gate(path: Path, origin: gate.Origin) -> None:
    verdict = await gate.check(path, origin)
    assert verdict.outcome != "failed", gate.advice([verdict])


async def test_an_incompatible_release_without_a_patch_fails_with_what_to_do() -> None:
    workflows = [IncompatibleReleaseWorkflow, JanitorWorkflow]
    golden = gate.HERE / "release_approved.json"
    verdicts = [await gate.check(golden, gate.Origin.THIS_COMMIT, workflows),
                await gate.check(gate.HERE / "7d11bb9" / "release_approved.json",
                                 gate.Origin.UNVERSIONED, workflows)]
    assert [v.outcome for v in verdicts] == ["failed", "failed"]
    assert "Nondeterminism error" in verdicts[0].detail
    message = gate.advice(verdicts)
    assert "REPLAY GATE FAILED: this commit's workflow code cannot replay 2 of 2" in message
    assert "tests/histories/release_approved.json" in message
    # Runs from before versioning move to the new build: only a patch saves them.
    assert "started before workers were versioned" in message
    assert 'workflow.patched("<what-changed>")' in message
    # Without such runs, a pinned type may instead ship as a new build.
    pinned_only = gate.advice(verdicts[:1])
    assert "ReleaseWorkflow is pinned" in pinned_only and "ship it as a new build" in pinned_only
    assert "slipway worker versions" in pinned_only


async def test_an_earlier_builds_pinned_runs_are_skipped_its_auto_upgrade_ones_replayed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "abc1234"
    folder.mkdir()
    for name in ("release_approved.json", "janitor.json"):
        shutil.copy(gate.HERE / name, folder / name)
    release = await gate.check(folder / "release_approved.json", gate.Origin.EARLIER_BUILD,
                               [IncompatibleReleaseWorkflow, JanitorWorkflow])
    assert release.outcome == "skipped" and "pinned to build abc1234" in release.detail
    janitor = await gate.check(folder / "janitor.json", gate.Origin.EARLIER_BUILD)
    assert janitor.outcome == "replayed"


def test_recorded_histories_must_all_replay(tmp_path: Path) -> None:
    shutil.copy(gate.HERE / "janitor.json", tmp_path / "janitor.json")
    assert gate.recorded_histories(tmp_path) == [(tmp_path / "janitor.json",
                                                  gate.Origin.INTEGRATION)]
