"""The sample app's chain endpoint (examples/sample-app/chain.cgi), run as busybox httpd runs it.

No container: the script runs under the host's busybox (the same busybox-static the base
image is made of), with every applet it calls taken from busybox, the request headers given
as the HTTP_* variables httpd sets, and a loopback HTTP server standing in for the
downstream hop.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample-app"
CHAIN = SAMPLE / "chain.cgi"
APPLETS = ("sh", "tr", "sed", "head", "grep", "cut", "mktemp", "rm", "nc", "timeout")


@pytest.fixture(scope="module")
def applets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH directory in which every tool the script uses is busybox."""
    busybox = shutil.which("busybox") or ("/bin/busybox" if Path("/bin/busybox").exists() else None)
    if busybox is None:
        pytest.skip("busybox is not installed (bash scripts/bootstrap.sh installs busybox-static)")
    directory = tmp_path_factory.mktemp("applets")
    for name in APPLETS:
        (directory / name).symlink_to(busybox)
    return directory


@dataclass
class Downstream:
    """A stand-in downstream hop: answers with ``status``/``body``/``headers`` and records
    every request's path and headers."""

    status: int = 200
    body: str = "down 9.9\n"
    headers: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    state = Downstream()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            payload = state.body.encode()
            self.send_response(state.status)
            for name, value in {"Content-Type": "text/plain", **state.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def chain(applets: Path, *, headers: dict[str, str] | None = None,
          **env: str) -> tuple[str, dict[str, str], str]:
    """Run the CGI as httpd would; return (status, response headers, body)."""
    environment = {"PATH": str(applets), "APP_VERSION": "1.0", "REQUEST_METHOD": "GET",
                   "SCRIPT_NAME": "/cgi-bin/chain", **env}
    for name, value in (headers or {}).items():
        environment["HTTP_" + name.upper().replace("-", "_")] = value
    result = subprocess.run([str(applets / "sh"), str(CHAIN)], env=environment,
                            capture_output=True, timeout=30, check=True)
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    fields = dict(line.split(": ", 1) for line in head.split("\r\n"))
    return fields.pop("Status"), fields, body


def test_the_last_hop_answers_its_name_and_version(applets: Path) -> None:
    assert chain(applets) == ("200 OK", {"Content-Type": "text/plain"}, "sample-app 1.0\n")
    assert chain(applets, SERVICE_NAME="c")[2] == "c 1.0\n"


def test_the_lane_key_is_shown_and_the_header_wins_over_baggage(applets: Path) -> None:
    assert chain(applets, SERVICE_NAME="c",
                 headers={"x-slipway-lane": "l1"})[2] == "c 1.0 lane=l1\n"
    assert chain(applets, SERVICE_NAME="c",
                 headers={"baggage": "foo=bar, slipway-lane=l2;p=1"})[2] == "c 1.0 lane=l2\n"
    assert chain(applets, SERVICE_NAME="c", headers={
        "x-slipway-lane": "l1", "baggage": "slipway-lane=l2"})[2] == "c 1.0 lane=l1\n"
    assert chain(applets, SERVICE_NAME="c", headers={"baggage": "foo=bar"})[2] == "c 1.0\n"


def test_a_hop_calls_its_downstream_and_forwards_the_lane_headers_unchanged(
        applets: Path, downstream: Downstream) -> None:
    status, _, body = chain(applets, SERVICE_NAME="a", DOWNSTREAM_URL=downstream.url, headers={
        "x-slipway-lane": "l1", "baggage": "foo=bar, slipway-lane=l1;p=1"})
    assert (status, body) == ("200 OK", "a 1.0 lane=l1 -> down 9.9\n")
    [(path, seen)] = downstream.seen
    assert path == "/cgi-bin/chain"
    assert seen["x-slipway-lane"] == "l1"
    assert seen["baggage"] == "foo=bar, slipway-lane=l1;p=1"


def test_no_lane_headers_are_invented(applets: Path, downstream: Downstream) -> None:
    assert chain(applets, SERVICE_NAME="a", DOWNSTREAM_URL=downstream.url)[2] == \
        "a 1.0 -> down 9.9\n"
    [(_, seen)] = downstream.seen
    assert "x-slipway-lane" not in seen and "baggage" not in seen


def test_a_path_prefix_in_the_downstream_url_is_kept(applets: Path,
                                                     downstream: Downstream) -> None:
    chain(applets, DOWNSTREAM_URL=downstream.url + "/b/")
    assert [path for path, _ in downstream.seen] == ["/b/cgi-bin/chain"]


def test_an_unreachable_downstream_answers_502_naming_the_hop(applets: Path,
                                                              downstream: Downstream) -> None:
    dead = downstream.url.rsplit(":", 1)[0] + ":1"
    status, fields, body = chain(applets, SERVICE_NAME="b", DOWNSTREAM_URL=dead)
    assert status == "502 Bad Gateway"
    assert fields["X-Sample-Chain"] == "failed"
    prefix = f"b 1.0 -> error: b failed to call its downstream {dead}/cgi-bin/chain: "
    assert body.startswith(prefix)
    assert "refused" in body


def test_an_error_status_downstream_answers_502_with_it(applets: Path,
                                                        downstream: Downstream) -> None:
    downstream.status, downstream.body = 503, "lane pay-42 has no healthy pay\n"
    status, _, body = chain(applets, SERVICE_NAME="a", DOWNSTREAM_URL=downstream.url)
    assert status == "502 Bad Gateway"
    assert body == (f"a 1.0 -> error: a failed to call its downstream {downstream.url}"
                    "/cgi-bin/chain: answered 503 Service Unavailable: "
                    "lane pay-42 has no healthy pay\n")


def test_a_failure_further_down_is_passed_on_behind_this_hop(applets: Path,
                                                             downstream: Downstream) -> None:
    failed = "b 2.0 -> error: b failed to call its downstream http://c:8080/cgi-bin/chain: x\n"
    downstream.status, downstream.body = 502, failed
    downstream.headers = {"X-Sample-Chain": "failed"}
    status, fields, body = chain(applets, SERVICE_NAME="a", DOWNSTREAM_URL=downstream.url)
    assert (status, fields["X-Sample-Chain"], body) == ("502 Bad Gateway", "failed",
                                                        "a 1.0 -> " + failed)


def test_the_image_serves_the_script_as_cgi_bin_chain() -> None:
    dockerfile = (SAMPLE / "Dockerfile").read_text()
    assert "COPY chain.cgi /www/cgi-bin/chain" in dockerfile
    assert any(line.startswith("RUN chmod 0755 ") and "/www/cgi-bin/chain" in line
               for line in dockerfile.splitlines())
