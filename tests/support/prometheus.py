"""A real Prometheus (Debian's ``prometheus`` package) scraping environments' HAProxies.

Each environment's HAProxy answers its Prometheus metrics at METRICS_PATH on its own
load-balancer port; the test server scrapes them every second, on loopback only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from integrations.haproxy.common import METRICS_PATH

SCRAPE_SECONDS = 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def prometheus(workdir: Path, lb_ports: list[int]) -> Iterator[str]:
    """Run Prometheus scraping the HAProxies on ``lb_ports``; yields its base URL."""
    targets = ", ".join(f"'127.0.0.1:{lb_port}'" for lb_port in lb_ports)
    with prometheus_configured(
            workdir,
            "scrape_configs:\n"
            "  - job_name: haproxy\n"
            f"    metrics_path: {METRICS_PATH}\n"
            f"    static_configs: [{{targets: [{targets}]}}]\n") as url:
        yield url


@contextmanager
def prometheus_configured(workdir: Path, config_tail: str) -> Iterator[str]:
    """Run Prometheus with a one-second scrape and evaluation interval and ``config_tail``
    (scrape configs, rule files) after the global section; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed: run scripts/bootstrap.sh (Debian "
                           "package prometheus)")
    port = _free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_SECONDS}s\n"
        f"  evaluation_interval: {SCRAPE_SECONDS}s\n" + config_tail)
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prometheus did not become ready: "
                                   + (workdir / "prometheus.log").read_text()[-2000:])
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
