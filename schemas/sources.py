"""Build sources and git refs: what may reach git on the worker.

The worker holds the Docker socket and every credential, so a build source must be inert: a
git URL of an accepted transport with no credential in it, or a directory under a configured
root. Refs and branch names never start with ``-`` (git would read them as options). Checked
where a source or ref enters (CLI, receiver, webhooks) and again at build time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

# scp-style git URL: user@host:path (the path never an option, never absolute-empty).
_SCP_RE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~][A-Za-z0-9._~/+-]*")
_SCP_LIKE_RE = re.compile(r"[^/\s]+@[^/\s]+:")
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
# A ref git accepts and that cannot be taken for an option: a sha, a branch or a tag name.
_REF_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+@-]{0,199}")
URL_SCHEMES = ("https", "ssh")


class SourceRefused(ValueError):
    """A build source or ref that must not reach git; the message says what to change."""


def is_git_url(source: str) -> bool:
    """A URL, or something shaped like scp's user@host:path (checked by check_git_url)."""
    return "://" in source or "::" in source or _SCP_LIKE_RE.match(source) is not None


def _refuse_controls(value: str, what: str) -> None:
    if not value:
        raise SourceRefused(f"empty {what}")
    if value.startswith("-"):
        raise SourceRefused(f"{what} {value!r} starts with '-': git would read it as an option")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise SourceRefused(f"{what} {value!r} contains whitespace or control characters")


def check_git_url(source: str) -> str:
    """An https://, ssh:// or scp-style (git@host:group/repo.git) URL without credentials."""
    if "::" in source.split("://", 1)[0]:
        raise SourceRefused(f"source {source!r} names a git remote helper (such as ext::); "
                            "use an https://, ssh:// or git@host:path URL")
    _refuse_controls(source, "source")
    if "://" not in source:
        if _SCP_RE.fullmatch(source) is None:
            raise SourceRefused(f"source {source!r} is not a git URL of the form "
                                "git@host:group/repo.git")
        return source
    parts = urlsplit(source)
    if parts.scheme not in URL_SCHEMES:
        raise SourceRefused(f"source {source!r} uses {parts.scheme or 'no'}:// — only "
                            "https:// and ssh:// git URLs (or git@host:path) are accepted")
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at and (parts.scheme == "https" or ":" in user):
        # The source travels into build inputs, i.e. workflow history: no secrets in it.
        raise SourceRefused("source URL carries a user, password or token: register it "
                            "without one and let git authenticate (credential helper, deploy "
                            "key); secrets never go into the catalogue or workflow history")
    if not _HOST_RE.fullmatch(host) or not parts.path.strip("/"):
        raise SourceRefused(f"source {source!r} names no host and repository path")
    return source


def check_local_source(source: str, roots: Sequence[Path]) -> Path:
    """A directory under one of ``roots`` (after following symlinks)."""
    _refuse_controls(source, "source")
    try:
        path = Path(source).expanduser().resolve()
    except (RuntimeError, OSError) as error:  # "~nobody/x": no such home directory
        raise SourceRefused(f"source {source!r} cannot be resolved: {error}") from None
    if not path.is_dir():
        raise SourceRefused(f"source {source!r} is neither an existing directory nor a git URL "
                            "(https://…, ssh://…, git@host:path)")
    allowed = [root.expanduser().resolve() for root in roots]
    if not any(path == root or path.is_relative_to(root) for root in allowed):
        shown = ", ".join(str(root) for root in allowed) or "none"
        raise SourceRefused(f"source directory {path} is outside the allowed source roots "
                            f"({shown}); set SLIPWAY_SOURCE_ROOTS to admit it")
    return path


def check_source(source: str, roots: Sequence[Path]) -> str:
    """A build source as it may be stored and built: a git URL, or a resolved directory.

    Nothing is trimmed: a source with a stray newline or space is refused, not repaired."""
    if not source:
        return ""
    if is_git_url(source):
        return check_git_url(source)
    return str(check_local_source(source, roots))


def check_ref(ref: str, what: str = "ref") -> str:
    """A commit sha, branch or tag name that git cannot take for an option or a range."""
    _refuse_controls(ref, what)
    if (_REF_RE.fullmatch(ref) is None or ".." in ref or "@{" in ref or ref.endswith(
            (".lock", "/", ".")) or "//" in ref):
        raise SourceRefused(f"{what} {ref!r} is not a valid git ref name")
    return ref
