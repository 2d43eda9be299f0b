"""The Docker builder's checkout: where sources and refs reach git, they are checked again."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from integrations.docker.builder import SourceError, checkout


def _repo(path: Path) -> str:
    """A local git repository with a Dockerfile on main and a second commit tagged v2."""
    path.mkdir()
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "Dockerfile").write_text("FROM scratch\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (path / "VERSION").write_text("2\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "two"], check=True)
    subprocess.run([*git, "tag", "v2"], check=True)
    return str(path)


def test_a_local_repository_checks_out_at_a_ref(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    with checkout(repo, "v2", [tmp_path]) as context:
        assert (context / "VERSION").read_text() == "2\n"
    first = subprocess.run(["git", "-C", repo, "rev-parse", "main~1"], check=True,
                           capture_output=True, text=True).stdout.strip()
    with checkout(repo, first, [tmp_path]) as context:
        assert not (context / "VERSION").exists()


@pytest.mark.parametrize(("source", "ref"), [
    ("--upload-pack=touch {marker} #.git", "main"),
    ("ext::sh -c touch% {marker}", "main"),
    ("{repo}", "--output={marker}"),
    ("{repo}", "-b{marker}"),
    ("file://{repo}", "main"),
    ("https://token@example.com/{marker}.git", "main"),
    ("/root", None),
])
def test_hostile_sources_and_refs_never_reach_git(tmp_path: Path, source: str,
                                                  ref: str | None) -> None:
    repo = _repo(tmp_path / "repo")
    marker = tmp_path / "pwned"
    with pytest.raises(SourceError), checkout(
            source.format(marker=marker, repo=repo),
            ref.format(marker=marker) if ref else ref, [tmp_path]):
        pass
    assert not marker.exists()


def test_a_symlink_out_of_the_roots_is_refused_at_build_time(tmp_path: Path) -> None:
    root, secret = tmp_path / "root", tmp_path / "secret"
    root.mkdir()
    secret.mkdir()
    (secret / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (root / "app").symlink_to(secret)
    with pytest.raises(SourceError, match="outside the allowed source roots"), checkout(
            str(root / "app"), None, [root]):
        pass
