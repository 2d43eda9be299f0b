"""Golden histories (tests/histories/*.json) replay on today's workflow code.

A failure here means a change alters the command sequence of histories already recorded:
guard it with ``workflow.patched`` (docs/operations.md, "Shipping a workflow change"), then
regenerate with ``python -m tests.histories.record``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.janitor import JanitorWorkflow
from workflows.release import ReleaseWorkflow
from workflows.swimlane import SwimlaneWorkflow
from workflows.train import TrainWorkflow

# Top level: recorded on today's code. One folder per earlier release (named by its commit):
# histories such a release wrote must still replay after an upgrade.
HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").rglob("*.json"))


def test_every_workflow_has_a_golden_history() -> None:
    types = {json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]
             ["workflowType"]["name"] for path in HISTORIES}
    assert types == {"ReleaseWorkflow", "SwimlaneWorkflow", "JanitorWorkflow", "TrainWorkflow"}


@pytest.mark.parametrize("path", HISTORIES, ids=[path.parent.name + "/" + path.stem
                                                  for path in HISTORIES])
async def test_golden_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=[ReleaseWorkflow, SwimlaneWorkflow, JanitorWorkflow,
                                   TrainWorkflow], data_converter=pydantic_data_converter)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)  # raises on a nondeterminism error
