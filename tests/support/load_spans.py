"""Concurrent bounded request loops that keep every request's span (sent, done, outcome), so
a test can tell the requests in flight at an instant (a process killed) from the others.

Loopback only, bounded in count and time, as :mod:`tests.support.load`; the outcome keys are
the same (``200 <body>``, ``503 …``, ``connection refused``, ``connection reset``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REFUSED = "connection refused"
RESET = "connection reset"


@dataclass(frozen=True)
class Span:
    sent: float  # time.monotonic()
    done: float
    outcome: str

    @property
    def ok(self) -> bool:
        return self.outcome.startswith("200 ") and self.outcome != "200 empty body"


@dataclass
class Spans:
    """Every request of the loops, in the order they ended."""

    items: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, span: Span) -> None:
        with self.lock:
            self.items.append(span)

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.items)

    def counts(self) -> Counter[str]:
        return Counter(span.outcome for span in self.snapshot())

    def failures(self, since: float | None = None) -> list[Span]:
        return [span for span in self.snapshot()
                if not span.ok and (since is None or span.done >= since)]

    def in_flight(self, start: float, end: float | None = None) -> list[Span]:
        """Requests open at some instant of [start, end]: sent before its end, done after
        its start (a request between kill -9 and the process's exit counts)."""
        end = start if end is None else end
        return [span for span in self.snapshot() if span.sent <= end and span.done >= start]

    def after(self, instant: float) -> list[Span]:
        return [span for span in self.snapshot() if span.sent >= instant]


@contextmanager
def concurrent_requests(url: str, clients: int = 4, max_requests: int = 20000,
                        max_seconds: float = 120, pause: float = 0.01) -> Iterator[Spans]:
    """``clients`` threads, each with its own keep-alive client, request ``url`` until the
    block ends (or ``max_requests`` in all, or ``max_seconds``), ``pause`` s between two."""
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError(f"load loops target loopback addresses only, not {url}")
    spans = Spans()
    stop = threading.Event()
    deadline = time.monotonic() + max_seconds

    def loop() -> None:
        with httpx.Client(timeout=5) as client:
            while (not stop.is_set() and time.monotonic() < deadline
                   and len(spans.items) < max_requests):
                sent = time.monotonic()
                try:
                    response = client.get(url)
                    body = response.text.strip()
                    outcome = (f"{response.status_code} {body[:40]}" if body
                               else f"{response.status_code} empty body")
                except httpx.ConnectError:
                    outcome = REFUSED
                except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
                    outcome = RESET  # the peer closed an open connection mid-request
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                spans.add(Span(sent, time.monotonic(), outcome))
                time.sleep(pause)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield spans
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def wait_exited(pid: int, timeout: float = 5.0) -> float:
    """Wait until every thread of ``pid`` is gone (or a zombie): its sockets are closed.
    Returns the instant (time.monotonic) it was seen gone."""
    deadline = time.monotonic() + timeout
    while True:
        if all(state in ("Z", "X") for state in _task_states(pid)):
            return time.monotonic()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"pid {pid} still runs after {timeout}s")
        time.sleep(0.002)


def _task_states(pid: int) -> Iterator[str]:
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            yield stat.read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue  # that thread is gone
