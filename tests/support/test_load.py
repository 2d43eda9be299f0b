"""The load loop's verdicts: a 200 counts only with a body."""

from __future__ import annotations

from collections import Counter

from tests.support.load import EMPTY_BODY, failures


def test_an_empty_200_is_a_failure_and_a_served_200_is_not() -> None:
    outcomes = Counter({"200 sample-app v1": 40, EMPTY_BODY: 2, "503 Service Unavailable": 1,
                        "connection refused": 3})
    assert failures(outcomes) == {EMPTY_BODY: 2, "503 Service Unavailable": 1,
                                  "connection refused": 3}
