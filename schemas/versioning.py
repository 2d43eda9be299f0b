"""Worker Versioning's shapes: which build a worker is, and what a deployment routes where.

A worker of Slipway declares a *deployment* (default: its task queue) and a *build ID*
(the package version and the git commit of the code it runs). Temporal routes each workflow
by its versioning behaviour (workflows/versioning.py): pinned runs stay on the build they
started on, auto-upgrade runs move to the current build at their next task.

:func:`detect_build_id` reads git because three processes must agree on the build of one
checkout without talking to each other: the worker (which declares it), `slipway up` (which
makes it current) and the tests. It never fails: without git it says so in the ID.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

# What the ID says when the commit cannot be read (an image built without .git, a tarball):
# such builds cannot be told apart, so set SLIPWAY_BUILD_ID there (docs/operations.md).
NO_GIT = "nogit"
# Temporal's limit on a build ID, and the characters we allow in one (a version's canonical
# string is ``<deployment>.<build>``: the deployment name takes no dot, the build ID may).
MAX_BUILD_ID = 255
BUILD_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
DEPLOYMENT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class BuildId(BaseModel):
    """A worker's build ID and where it came from (``setting``, ``git`` or ``fallback``)."""

    value: str
    source: str
    note: str = ""


def package_version() -> str:
    """Slipway's version as installed (``pip install -e .``), else ``0.0.0``."""
    try:
        return importlib.metadata.version("slipway")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def git_commit(root: Path) -> str | None:
    """The commit checked out at ``root`` (12 hex digits), or None without git or a repo."""
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


# Once per process and checkout: the worker, `up` and every command ask again.
@lru_cache(maxsize=8)
def detect_build_id(root: Path, configured: str = "") -> BuildId:
    """``configured`` (SLIPWAY_BUILD_ID) when set, else ``<version>-<commit>`` of the checkout
    at ``root``, else ``<version>-nogit`` with a note that says what to set."""
    if configured:
        return BuildId(value=configured, source="setting")
    version = package_version()
    commit = git_commit(root)
    if commit:
        return BuildId(value=f"{version}-{commit}", source="git")
    return BuildId(value=f"{version}-{NO_GIT}", source="fallback",
                   note=f"no git commit at {root}: every build of version {version} gets this "
                        "ID; set SLIPWAY_BUILD_ID to tell builds apart")


def check_build_id(value: str) -> str:
    """``value`` when it is a usable build ID; ValueError naming the rule otherwise."""
    if not value or len(value) > MAX_BUILD_ID or not BUILD_ID_PATTERN.match(value):
        raise ValueError(f"build ID {value!r}: up to {MAX_BUILD_ID} letters, digits and . _ + -, "
                         "starting with a letter or digit")
    return value


class VersionStatus(StrEnum):
    """Where a version stands in its deployment (Temporal's WorkerDeploymentVersionStatus)."""

    CURRENT = "current"
    RAMPING = "ramping"
    DRAINING = "draining"
    DRAINED = "drained"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"


class VersionView(BaseModel):
    """One build of a deployment: its status, and the open runs pinned to it."""

    build_id: str
    status: VersionStatus
    ramp_percent: float = 0.0
    created: datetime | None = None
    current_since: datetime | None = None
    # Running workflows whose versioning says they run on this build, by behaviour.
    pinned: list[str] = Field(default_factory=list)
    auto_upgrade: list[str] = Field(default_factory=list)


class DeploymentView(BaseModel):
    """``slipway worker versions``: a deployment's routing and its builds, newest first."""

    name: str
    current: str = ""  # a build ID; empty: unversioned workers get new runs
    ramping: str = ""
    ramp_percent: float = 0.0
    versions: list[VersionView] = Field(default_factory=list)
    unversioned: list[str] = Field(default_factory=list)  # running, on no build


class RoutingChange(BaseModel):
    """What ``slipway worker promote`` / ``rollback`` changed: before and after."""

    deployment: str
    build_id: str
    ramp_percent: float | None = None  # None: made current
    previous_current: str = ""
    previous_ramping: str = ""
