"""The web provider asks only allow-listed hosts, never a metadata address, follows no
redirect to another host, and never echoes a value that is not a number."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from activities.analysis import MetricProviders
from integrations.web.hosts import SETTING, WebHostRefused, WebHosts
from integrations.web.json_metric import WebMetricError, read_field
from schemas.analysis import AnalysisPolicy, AnalysisTarget, MeasureInput, Metric, Provider
from schemas.settings import Settings

SECRET = "AKIA-s3cret-from-the-endpoint"


class Answers(BaseHTTPRequestHandler):
    """/number → {"v": 0.5}; /text → {"v": SECRET}; /same → redirect to /number;
    /away → redirect to localhost on another port."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        port = self.server.server_port  # type: ignore[attr-defined]
        redirects = {"/same": f"http://127.0.0.1:{port}/number",
                     "/away": "http://169.254.169.254/latest/meta-data/",
                     "/other-port": f"http://127.0.0.1:{port + 1}/number"}
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.end_headers()
            return
        body = json.dumps({"v": 0.5 if self.path == "/number" else SECRET}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://100.100.100.200/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
])
def test_metadata_addresses_are_refused_even_when_listed(url: str) -> None:
    hosts = WebHosts(["169.254.169.254", "169.254.170.2", "fd00:ec2::254",
                      "::ffff:169.254.169.254", "100.100.100.200", "metadata.google.internal"])
    with pytest.raises(WebHostRefused, match="link-local or cloud metadata"):
        hosts.check(url)
    with pytest.raises(WebMetricError, match=f"whatever {SETTING} lists"):
        read_field(url, "v", hosts=hosts)


def test_only_listed_hosts_are_asked_and_the_default_is_loopback() -> None:
    loopback = WebHosts()
    for url in ("http://127.0.0.1:8000/s", "https://localhost/s", "http://[::1]:9/s"):
        loopback.check(url)
    with pytest.raises(WebHostRefused) as refused:
        loopback.check("http://10.0.0.5:9000/smoke")
    assert (f"10.0.0.5:9000 is not on {SETTING} (a JSON list of host or host:port; it lists "
            "127.0.0.1, localhost, ::1)") in str(refused.value)
    ported = WebHosts(["metrics.internal:8080", "[::1]:9090"])
    ported.check("http://Metrics.Internal:8080/x")
    ported.check("http://[::1]:9090/x")
    for url in ("http://metrics.internal/x", "http://[::1]:9091/x", "ftp://metrics.internal/"):
        with pytest.raises(WebHostRefused):
            ported.check(url)
    with pytest.raises(WebMetricError, match=f"not on {SETTING}"):
        read_field("http://192.0.2.7/smoke", "v")  # refused before any request


def test_a_listed_name_that_resolves_to_a_metadata_address_is_refused() -> None:
    hosts = WebHosts(["metrics.internal"], resolve=lambda _host, _port: ["169.254.169.254"])
    hosts.check("http://metrics.internal/x")  # the policy check does not resolve
    with pytest.raises(WebHostRefused, match="resolves to a link-local or cloud metadata"):
        hosts.check("http://metrics.internal/x", resolve=True)


def test_redirects_are_followed_within_the_same_origin_only(endpoint: str) -> None:
    assert read_field(f"{endpoint}/same", "v") == 0.5
    for path in ("/away", "/other-port"):
        with pytest.raises(WebMetricError) as error:
            read_field(f"{endpoint}{path}", "v")
        assert "a redirect to another host: not followed" in str(error.value)
        assert "169.254" not in str(error.value)


def test_a_value_that_is_not_a_number_is_not_echoed(endpoint: str) -> None:
    with pytest.raises(WebMetricError) as error:
        read_field(f"{endpoint}/text", "v")
    assert "field 'v' holds a text: not a number" in str(error.value)
    assert SECRET not in str(error.value)


def test_measurements_and_policy_checks_keep_to_the_allowed_hosts(endpoint: str) -> None:
    providers = MetricProviders.from_settings(Settings())  # loopback only
    target = AnalysisTarget(app="shop", env="prod@local", env_key="shop-prod-local", version=2)
    policy = AnalysisPolicy(metrics=[
        Metric(name="text", provider=Provider.WEB, query=f"{endpoint}/text", field="v", max=1),
        Metric(name="meta", provider=Provider.WEB, field="v", max=1,
               query="http://169.254.169.254/latest/meta-data/"),
        Metric(name="remote", provider=Provider.WEB, query="http://192.0.2.7/x", field="v",
               max=1)])
    problems = providers.problems(policy, target)
    assert [problem.split(":", 1)[0] for problem in problems] == ["metric 'meta'",
                                                                  "metric 'remote'"]
    result = providers.measure(MeasureInput(policy=policy, metrics=["text", "meta", "remote"],
                                            target=target))
    details = {m.metric: m.detail for m in result.measurements}
    assert all(m.verdict == "error" and m.at <= datetime.now(UTC)
               for m in result.measurements)
    assert "not a number" in details["text"] and SECRET not in json.dumps(details)
    assert "link-local or cloud metadata" in details["meta"]
    assert f"not on {SETTING}" in details["remote"]
