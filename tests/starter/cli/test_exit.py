"""The CLI process ends without interpreter teardown, so the SDK's threads cannot abort it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hermetic import clean_env

REPO = Path(__file__).resolve().parents[3]
SCRIPT = """
import atexit, sys
from starter.cli.main import main
marker = sys.argv[1]
atexit.register(lambda: open(marker, "w").write("finalized"))
sys.argv = ["slipway", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize(("args", "status"), [(["--help"], 0), (["app", "show", "nosuch"], 1),
                                               (["no-such-command"], 2)])
def test_main_leaves_with_the_command_status_and_no_finalization(
        tmp_path: Path, args: list[str], status: int) -> None:
    marker = tmp_path / "finalized"
    env = clean_env(SLIPWAY_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(marker), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stderr
    # atexit handlers run during interpreter teardown: none ran, so teardown did not happen.
    assert not marker.exists()
    # ...and the output was flushed before leaving.
    assert (done.stdout + done.stderr).strip()
