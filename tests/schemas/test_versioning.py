"""A worker's build ID: SLIPWAY_BUILD_ID, else version + git commit, else a clear fallback;
the deployment name Temporal accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from schemas.settings import Settings
from schemas.versioning import NO_GIT, check_build_id, detect_build_id, package_version


@pytest.fixture(autouse=True)
def fresh_detection() -> None:
    detect_build_id.cache_clear()


def test_a_clean_clone_is_its_version_and_commit(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "clone"
    repo.mkdir()
    for command in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit",
                                     "-q", "--allow-empty", "-m", "one"]):
        subprocess.run(["git", "-C", str(repo), *command], check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                            check=True, capture_output=True, text=True).stdout.strip()
    found = detect_build_id(repo)
    assert (found.value, found.source, found.note) == (f"{package_version()}-{commit}", "git", "")


def test_without_git_it_says_so_and_what_to_set(tmp_path: Path) -> None:
    found = detect_build_id(tmp_path)  # no repository here
    assert found.value == f"{package_version()}-{NO_GIT}" and found.source == "fallback"
    assert "set SLIPWAY_BUILD_ID" in found.note


def test_the_setting_wins_and_is_checked(tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path, build_id="2.0-rc1").worker_build().value == "2.0-rc1"
    with pytest.raises(ValueError, match="build ID 'a b'"):
        Settings(state_dir=tmp_path, build_id="a b").worker_build()
    assert check_build_id("0.1.0-abc") == "0.1.0-abc"


def test_the_deployment_is_the_task_queue_unless_named(tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path, task_queue="slipway").deployment_name() == "slipway"
    named = Settings(state_dir=tmp_path, worker_deployment="slipway-prod")
    assert named.deployment_name() == "slipway-prod"
    with pytest.raises(ValueError, match="no dot"):
        Settings(state_dir=tmp_path, task_queue="slipway.v2").deployment_name()
