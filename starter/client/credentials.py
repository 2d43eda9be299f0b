"""Where the client finds its server and its token.

The server: ``$SLIPWAY_URL``, else the one ``slipway login`` (or ``slipway up``) saved, else
the embedded stack's (``http://127.0.0.1:$SLIPWAY_SERVER_PORT``, port 8470). The token:
``$SLIPWAY_TOKEN``, else the one saved for that very server, never another server's. The
saved file is ``$XDG_CONFIG_HOME/slipway/credentials.json`` (``~/.config`` by default), mode
0600 in a 0700 directory; like ssh with a private key, the client refuses to use one that
others may read.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8470


class CredentialsError(RuntimeError):
    """The saved credentials cannot be used; the message says how to fix them."""


@dataclass(frozen=True)
class Target:
    """A server and the token the client presents to it ("" when it has none)."""

    url: str
    token: str
    # Where the token came from, for error messages: "SLIPWAY_TOKEN" or the file's path.
    token_source: str = ""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "slipway"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('SLIPWAY_SERVER_PORT') or DEFAULT_PORT}"


def normal_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CredentialsError(f"server URL {url!r} must start with http:// or https://")
    return url


def load_saved() -> dict[str, str]:
    """The saved ``{"url", "token"}``, or {} when there is none."""
    path = credentials_path()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(f"{path} may be read by others (mode {stat.S_IMODE(mode):04o}): "
                               f"`chmod 600 {path}`, or log in again with `slipway login`")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CredentialsError(f"{path} is unreadable ({error}): log in again with "
                               "`slipway login`") from error
    if not isinstance(saved, dict):
        raise CredentialsError(f"{path} is not a JSON object: log in again with "
                               "`slipway login`")
    return {key: str(value) for key, value in saved.items() if key in ("url", "token")}


def save(url: str, token: str) -> Path:
    """Save the server and token for later commands (0600, replaced atomically)."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, scratch = tempfile.mkstemp(dir=directory, prefix=".credentials-")
    try:
        with os.fdopen(descriptor, "w") as out:  # mkstemp creates it 0600
            json.dump({"url": normal_url(url), "token": token}, out)
        os.replace(scratch, credentials_path())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
    return credentials_path()


def forget() -> bool:
    """Remove the saved credentials; False when there were none."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


def target(url: str = "") -> Target:
    """The server to talk to (``url`` when given) and the token for it."""
    saved = load_saved()
    chosen = normal_url(url or os.environ.get("SLIPWAY_URL", "") or saved.get("url", "")
                        or default_url())
    if token := os.environ.get("SLIPWAY_TOKEN", "").strip():
        return Target(chosen, token, "SLIPWAY_TOKEN")
    if saved.get("token") and normal_url(saved.get("url", "") or default_url()) == chosen:
        return Target(chosen, saved["token"], str(credentials_path()))
    return Target(chosen, "")
