"""When a commit was made, from the git repository an application builds from.

Lead time for changes runs from the commit a change carries; the catalogue keeps the ref, git
keeps the time. A local checkout (the Docker engine builder's ``source``) answers with
``git log``; a source git cannot read here (a remote URL, no git, an unknown ref) answers
None, and the measure falls back to the change's creation time (docs/insights.md).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

GIT_SECONDS = 10


def commit_time(source: str, ref: str) -> datetime | None:
    """The committer time of ``ref`` in the repository at ``source``, in UTC; None if unknown."""
    git = shutil.which("git")
    if not (git and source and ref) or ref.startswith("-") or not Path(source).is_dir():
        return None
    try:
        done = subprocess.run(
            [git, "-C", source, "log", "-1", "--format=%cI", f"{ref}^{{commit}}", "--"],
            capture_output=True, text=True, timeout=GIT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    try:
        return datetime.fromisoformat(done.stdout.strip()).astimezone(UTC)
    except ValueError:
        return None
