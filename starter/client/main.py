"""``slipway`` / ``python -m starter``: the client of Slipway's server.

Every command is sent to the server (``POST /api/commands``), which runs it as the user of
the client's token and streams its output back; who acts is the token's user, never a name
typed here. Three commands are the client's own: ``login`` (save a server and a token),
``logout`` and ``whoami``. The commands that run Slipway's own processes (``up``, ``down``,
``dev``, ``demo``, ``server``, ``agent``) run on this machine (``python -m starter.cli``),
which must hold the stack's catalogue and Temporal, as the server does.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import sys
from pathlib import Path

from starter.client import credentials, transport

STACK_COMMANDS = frozenset({"up", "down", "dev", "demo", "server", "agent"})
CLIENT_HELP = """
Client commands (run here, not on the server):
  login     Save a server (--url, default $SLIPWAY_URL) and your API token (read from stdin)
  logout    Forget the saved token
  whoami    Show who your token acts as, its roles and scope
Server: $SLIPWAY_URL, else the one you logged in to, else http://127.0.0.1:8470 (`slipway up`).
Token: $SLIPWAY_TOKEN, else the one `slipway login` saved for that server.
"""


def _err(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return 1


def _unreachable(url: str, error: Exception) -> str:
    return (f"cannot reach Slipway's server at {url} ({error}): start the embedded stack "
            "with `slipway up`, or point SLIPWAY_URL at your server")


def _refused(target: credentials.Target, error: transport.ServerRefused) -> str:
    if error.status == 401:
        where = target.token_source or "your saved credentials"
        return (f"the server at {target.url} refused the token from {where} ({error}): "
                "log in again with `slipway login`")
    return f"the server at {target.url} answered {error.status}: {error}"


def _uploads(argv: list[str]) -> dict[int, str]:
    """The files a command names (a canary-analysis policy), read here: the server never
    reads a path of its own on a caller's behalf."""
    indexes: list[int] = []
    words = [(i, word) for i, word in enumerate(argv) if not word.startswith("-")]
    if [word for _, word in words[:2]] == ["analysis", "set"] and len(words) >= 5:
        indexes.append(words[4][0])
    for i, word in enumerate(argv):
        if word == "--analysis" and i + 1 < len(argv):
            indexes.append(i + 1)
        elif word.startswith("--analysis="):
            indexes.append(i)
    files: dict[int, str] = {}
    for index in indexes:
        path = Path(argv[index].split("=", 1)[-1] if argv[index].startswith("--")
                    else argv[index])
        try:
            files[index] = path.read_text()
        except OSError as error:
            raise credentials.CredentialsError(f"{path}: {error.strerror or error}") from error
    return files


def _download(argv: list[str]) -> tuple[list[str], Path | None]:
    """``insights --html FILE`` writes FILE here: the server is asked for the report on its
    output (``--html -``), as it never writes a path of its own for a caller."""
    if not argv or argv[0] != "insights":
        return argv, None
    for i, word in enumerate(argv):
        if word == "--html" and i + 1 < len(argv) and argv[i + 1] != "-":
            return [*argv[:i + 1], "-", *argv[i + 2:]], Path(argv[i + 1])
        if word.startswith("--html=") and word != "--html=-":
            return [*argv[:i], "--html=-", *argv[i + 1:]], Path(word.split("=", 1)[1])
    return argv, None


def remote(argv: list[str]) -> int:
    """Run ``argv`` on the server; print its output as it comes; return its exit status."""
    try:
        target = credentials.target()
        files = _uploads(argv)
    except credentials.CredentialsError as error:
        return _err(str(error))
    argv, saved_to = _download(argv)
    if saved_to is not None:
        return _save_output(target, argv, saved_to)
    if not target.token:
        return _err(f"no API token for {target.url}: log in with `slipway login` (an admin "
                    "makes you one with `slipway token create USER`), or set SLIPWAY_TOKEN")
    body = {"argv": argv, "columns": shutil.get_terminal_size().columns,
            "terminal": sys.stdout.isatty(), "files": files}
    try:
        response = transport.request(target.url, target.token, "POST", "/api/commands", body,
                                     stream=True)
        for frame in transport.frames(response):
            if "exit" in frame:
                return int(frame["exit"])
            for name, stream in (("out", sys.stdout), ("err", sys.stderr)):
                if name in frame:
                    stream.write(frame[name])
                    stream.flush()
    except transport.ServerUnreachable as error:
        return _err(_unreachable(target.url, error))
    except transport.ServerRefused as error:
        return _err(_refused(target, error))
    except (OSError, ValueError) as error:
        return _err(f"the connection to {target.url} broke before the command ended "
                    f"({error}); what it started goes on: `slipway status APP ENV`")
    return _err(f"the server at {target.url} ended the command without a status")


def _save_output(target: credentials.Target, argv: list[str], path: Path) -> int:
    """Run ``argv`` on the server with its standard output going to ``path`` (written only
    when the command succeeds); its errors still go to stderr."""
    chunks: list[str] = []
    stdout = sys.stdout
    sys.stdout = _Collect(chunks)  # type: ignore[assignment]
    try:
        code = remote(argv)
    finally:
        sys.stdout = stdout
    if code == 0:
        try:
            path.write_text("".join(chunks), encoding="utf-8")
        except OSError as error:
            return _err(f"{path}: {error.strerror or error}")
        sys.stdout.write(f"wrote {path}\n")
    return code


class _Collect:
    """A stand-in for stdout that keeps what is written."""

    def __init__(self, chunks: list[str]) -> None:
        self.chunks = chunks

    def write(self, text: str) -> int:
        self.chunks.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def show_help() -> int:
    """The server's help for the whole tree, and the client's own commands."""
    try:
        target = credentials.target()
    except credentials.CredentialsError as error:
        return _err(str(error))
    code = remote(["--help"]) if target.token else 1
    if not target.token:
        sys.stdout.write(f"Slipway: no API token for {target.url}, so no server help; "
                         "`slipway login` first (`slipway up` starts the embedded stack and "
                         "logs you in).\n")
    sys.stdout.write(CLIENT_HELP)
    return code


def login(argv: list[str]) -> int:
    """``slipway login [--url URL]``: read a token (stdin), check it, save it."""
    url = ""
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        if word == "--url" and rest:
            url = rest.pop(0)
        elif word.startswith("--url="):
            url = word.split("=", 1)[1]
        elif word in ("-h", "--help"):
            sys.stdout.write("Usage: slipway login [--url URL]\n\nRead your API token from "
                             "stdin (a prompt on a terminal), check it with the server, and "
                             "save both (mode 0600) for later commands.\n")
            return 0
        else:
            return _err(f"login: unexpected {word!r}; usage: slipway login [--url URL]")
    try:
        url = credentials.normal_url(url or os.environ.get("SLIPWAY_URL", "")
                                     or credentials.default_url())
    except credentials.CredentialsError as error:
        return _err(str(error))
    token = (getpass.getpass(f"API token for {url}: ") if sys.stdin.isatty()
             else sys.stdin.readline()).strip()
    if not token:
        return _err("login: no token given (paste the one `slipway token create` printed)")
    try:
        me = transport.get_json(url, token, "/api/whoami")
    except transport.ServerUnreachable as error:
        return _err(_unreachable(url, error))
    except transport.ServerRefused as error:
        return _err(f"the server at {url} refused that token ({error}); nothing was saved")
    path = credentials.save(url, token)
    sys.stdout.write(f"logged in to {url} as {me['user']} (token {me['token']}: "
                     f"{', '.join(me['roles'])}; {me['scope']}); saved in {path}\n")
    return 0


def whoami() -> int:
    try:
        target = credentials.target()
    except credentials.CredentialsError as error:
        return _err(str(error))
    if not target.token:
        return _err(f"no API token for {target.url}: `slipway login`")
    try:
        me = transport.get_json(target.url, target.token, "/api/whoami")
    except transport.ServerUnreachable as error:
        return _err(_unreachable(target.url, error))
    except transport.ServerRefused as error:
        return _err(_refused(target, error))
    sys.stdout.write(f"{me['user']} at {target.url} (token {me['token']} from "
                     f"{target.token_source}: {', '.join(me['roles'])}; {me['scope']})\n")
    return 0


def run(argv: list[str]) -> int:
    """Run one command line; return its exit status."""
    first = argv[0] if argv else "--help"
    if first in ("--help", "-h"):
        return show_help()
    if first == "login":
        return login(argv[1:])
    if first == "logout":
        forgot = credentials.forget()
        sys.stdout.write(f"{'forgot' if forgot else 'no saved token in'} "
                         f"{credentials.credentials_path()}\n")
        return 0
    if first == "whoami":
        return whoami()
    if first in STACK_COMMANDS:
        # This machine's stack, with what it holds: the operator's own command tree.
        os.execv(sys.executable, [sys.executable, "-m", "starter.cli", *argv])
    return remote(argv)


def main() -> None:
    """Process entry point of ``slipway`` and ``python -m starter``."""
    try:
        code = run(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    raise SystemExit(code)
