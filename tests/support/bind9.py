"""A real authoritative DNS server for tests: Debian's bind9 (`named`) accepting RFC 2136
updates signed with a TSIG key.

`running_bind9()` writes a `named.conf`, a `tsig-keygen` key and a primary zone `lanes.test`
(zone file and journal) into a temporary directory, starts `named -g` in the foreground on
127.0.0.1:<free port> (UDP and TCP), waits until it answers an SOA query and kills it after.
The packages come from `.ci/run`'s bootstrap (`bind9 bind9-utils`); nothing is installed here.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

NAMED_BIN = "named"
KEYGEN_BIN = "tsig-keygen"
ZONE = "lanes.test"
KEY_NAME = "slipway-key"
ALGORITHM = "hmac-sha256"


@dataclass(frozen=True)
class Bind9Server:
    """Where the test name server listens and the TSIG key that may update its zone."""

    server: str
    port: int
    zone: str
    key_name: str
    secret: str = field(repr=False)
    root: Path = field(repr=False)


def bind9_available() -> bool:
    return shutil.which(NAMED_BIN) is not None and shutil.which(KEYGEN_BIN) is not None


def _free_port() -> int:
    """A port free for both UDP and TCP on loopback: named listens on both."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no loopback port free for both UDP and TCP")


def _named_conf(root: Path, port: int) -> str:
    # Everything named writes (pid, session key, managed keys, journal) stays in the temp dir,
    # so parallel servers and the system's own bind9 never collide.
    return f"""
include "{root / 'key.conf'}";
options {{
    directory "{root}";
    pid-file "{root / 'named.pid'}";
    session-keyfile "{root / 'session.key'}";
    managed-keys-directory "{root}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
zone "{ZONE}" {{
    type primary;
    file "{root / (ZONE + '.zone')}";
    allow-update {{ key "{KEY_NAME}"; }};
}};
"""


_ZONE_FILE = f"""$TTL 60
@   IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60
@   IN NS  ns.{ZONE}.
ns  IN A   127.0.0.1
"""


def _wait_until_answering(
    process: subprocess.Popen[bytes], port: int, log: Path, timeout: float
) -> None:
    query = dns.message.make_query(ZONE, "SOA")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"named exited with {process.returncode}:\n{tail}")
        try:
            response = dns.query.tcp(query, "127.0.0.1", port=port, timeout=1.0)
            # NOERROR only once the zone is loaded (before that it answers REFUSED/SERVFAIL).
            if response.rcode() == dns.rcode.NOERROR and response.answer:
                return
        except (OSError, dns.exception.DNSException):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"named did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_bind9(startup_timeout: float = 20.0) -> Iterator[Bind9Server]:
    """Start named with a dynamic zone `lanes.test` on a free loopback port; stop it after."""
    with tempfile.TemporaryDirectory(prefix="slipway-bind9-") as tmp:
        root = Path(tmp)
        key_conf = subprocess.run(
            [KEYGEN_BIN, "-a", ALGORITHM, KEY_NAME], capture_output=True, text=True, check=True
        ).stdout
        (root / "key.conf").write_text(key_conf)
        found = re.search(r'secret\s+"([^"]+)"', key_conf)
        if not found:
            raise RuntimeError("tsig-keygen printed no secret")
        port = _free_port()
        (root / "named.conf").write_text(_named_conf(root, port))
        (root / f"{ZONE}.zone").write_text(_ZONE_FILE)
        log = root / "named.log"
        with log.open("wb") as log_file:
            # -g: foreground, logs to stderr (our log file); -u root: the tests run as root
            # and the temp dir belongs to root, so named must not drop to the `bind` user.
            process = subprocess.Popen(
                [NAMED_BIN, "-g", "-c", str(root / "named.conf"), "-u", "root", "-n", "1"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_until_answering(process, port, log, startup_timeout)
            yield Bind9Server(
                server="127.0.0.1",
                port=port,
                zone=ZONE,
                key_name=KEY_NAME,
                secret=found.group(1),
                root=root,
            )
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@pytest.fixture(scope="module")
def bind9_server() -> Iterator[Bind9Server]:
    """A running named per test module; skipped only when bind9 is not installed."""
    if not bind9_available():
        pytest.skip("needs Debian's bind9 and bind9-utils (named, tsig-keygen)")
    with running_bind9() as server:
        yield server
