"""A bounded request loop against a loopback URL, counting what came back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


@contextmanager
def request_loop(url: str, max_requests: int = 5000,
                 max_seconds: float = 180) -> Iterator[Counter[str]]:
    """Request ``url`` until the block ends, bounded in count and time; loopback only."""
    if not url.startswith(("http://127.", "http://localhost")):
        raise ValueError(f"load loops target loopback addresses only, not {url}")
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + max_seconds
        with httpx.Client(timeout=5) as client:
            while (not stop.is_set() and time.monotonic() < deadline
                   and outcomes.total() < max_requests):
                try:
                    response = client.get(url)
                    body = response.text.strip()
                    # A 200 with no body is a truncated answer, not a success.
                    outcomes[f"{response.status_code} {body[:40]}" if body
                             else f"{response.status_code} empty body"] += 1
                except httpx.ConnectError:
                    outcomes["connection refused"] += 1
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # The peer closed an open connection mid-request (a killed proxy).
                    outcomes["connection reset"] += 1
                except httpx.HTTPError as error:
                    outcomes[type(error).__name__] += 1
                time.sleep(0.02)

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
