"""A bounded request loop against a loopback URL, counting what came back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


class Outcomes(Counter[str]):
    """Counts of each outcome, when (time.monotonic) each was first and last seen, and how
    long every request took (seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.latencies: list[float] = []

    def saw(self, key: str, sent: float | None = None) -> None:
        now = time.monotonic()
        if sent is not None:
            self.latencies.append(now - sent)
        self[key] += 1
        self.first.setdefault(key, now)
        self.last[key] = now


@contextmanager
def request_loop(url: str, max_requests: int = 5000, max_seconds: float = 180,
                 pause: float = 0.02, headers: dict[str, str] | None = None,
                 test_hosts: tuple[str, ...] = (), body_chars: int = 40) -> Iterator[Outcomes]:
    """Request ``url`` (with ``headers``) until the block ends, bounded in count and time,
    ``pause`` seconds between requests; loopback only, or ``test_hosts``: addresses the
    test made itself (a network namespace's). Outcomes are keyed by status and the body's
    first ``body_chars`` characters."""
    allowed = ("http://127.", "http://localhost", *(f"http://{host}:" for host in test_hosts))
    if not url.startswith(allowed):
        raise ValueError(f"load loops target loopback or the test's own addresses, not {url}")
    outcomes = Outcomes()
    stop = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + max_seconds
        with httpx.Client(timeout=5, headers=headers) as client:
            while (not stop.is_set() and time.monotonic() < deadline
                   and outcomes.total() < max_requests):
                sent = time.monotonic()
                try:
                    response = client.get(url)
                    body = response.text.strip()
                    # A 200 with no body is a truncated answer, not a success.
                    outcomes.saw(f"{response.status_code} {body[:body_chars]}" if body
                                 else f"{response.status_code} empty body", sent)
                except httpx.ConnectError:
                    outcomes.saw("connection refused", sent)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # The peer closed an open connection mid-request (a killed proxy).
                    outcomes.saw("connection reset", sent)
                except httpx.HTTPError as error:
                    outcomes.saw(type(error).__name__, sent)
                time.sleep(pause)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        thread.join(timeout=10)


EMPTY_BODY = "200 empty body"


def failures(outcomes: Counter[str]) -> dict[str, int]:
    """Every outcome but a 200 with a body: errors, refused connections and empty answers."""
    return {key: count for key, count in outcomes.items()
            if not key.startswith("200 ") or key == EMPTY_BODY}
