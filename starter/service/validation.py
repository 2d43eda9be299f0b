"""Validation of an environment's resources and rollout policy.

Shared by ``env add`` (:mod:`starter.service.catalogue`) and ``change create``
(:mod:`starter.service.changes`) so a value refused in one place is refused, with the same
words, in the other. Each check raises :class:`CatalogueError` with one line that names the fix.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, TypeVar

from pydantic import ValidationError

from catalogue.store import CatalogueError
from schemas.durations import APPROVAL_TIMEOUT, STABLE, DurationRule
from schemas.enums import ApprovalPolicy, Strategy

REPLICAS_MIN, REPLICAS_MAX = 1, 24
GATE = "gate"
# One replica beside the old version, then half, then all: valid for any replica count.
DEFAULT_GRAY_STEPS = ("1", "50%", "100%")

_CPU = re.compile(r"(?:\d+(?:\.\d{1,3})?|\.\d{1,3}|\d+m)")
# Kubernetes quantities with a unit: a bare number would mean bytes and is always a mistake here.
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)(?:Ki|Mi|Gi|Ti|k|M|G|T)")
_STEP = re.compile(r"(\d+)(%?)")
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

_Enum = TypeVar("_Enum", Strategy, ApprovalPolicy)


def refusal(error: ValidationError) -> CatalogueError:
    """A model's refusal as one line a person can act on (the validators' own words)."""
    return CatalogueError("; ".join(item["msg"].removeprefix("Value error, ")
                                    for item in error.errors(include_url=False)))


def check_replicas(replicas: int) -> None:
    if not REPLICAS_MIN <= replicas <= REPLICAS_MAX:
        raise CatalogueError(
            f"replicas must be between {REPLICAS_MIN} and {REPLICAS_MAX}, got {replicas}"
        )


def check_cpu(cpu: str) -> None:
    if cpu and (not _CPU.fullmatch(cpu) or _cpu_value(cpu) <= 0):
        raise CatalogueError(f"cpu must be cores like 0.5 or millicores like 500m, got {cpu!r}")


def check_memory(memory: str) -> None:
    memory_match = _MEMORY.fullmatch(memory)
    if memory and (memory_match is None or float(memory_match.group(1)) <= 0):
        raise CatalogueError(
            f"memory must be a quantity like 256Mi or 1Gi (units Ki, Mi, Gi, Ti, k, M, G, T), "
            f"got {memory!r}"
        )


def check_rollout(env_type: str, replicas: int, *, strategy: Strategy | str | None,
                  gray_steps: list[str] | None, stable_seconds: int, batch_size: int,
                  approval: ApprovalPolicy | str,
                  approval_timeout_seconds: int) -> dict[str, Any]:
    """Validate an environment's rollout policy; return the Environment columns it sets."""
    chosen = _choice(Strategy, strategy or (Strategy.GRAY if env_type == "prod"
                                            else Strategy.RECREATE), "strategy")
    if gray_steps is not None and chosen != Strategy.GRAY:
        raise CatalogueError(f"--steps applies to the gray strategy only, and this "
                             f"environment uses {chosen}: add --strategy gray or drop --steps")
    steps = check_gray_steps(gray_steps, replicas) if gray_steps is not None else None
    _within(STABLE, stable_seconds)
    if not 1 <= batch_size <= replicas:
        raise CatalogueError(
            f"batch size must be between 1 and the replica count {replicas}, got {batch_size}"
        )
    policy = _choice(ApprovalPolicy, approval, "approval policy")
    _within(APPROVAL_TIMEOUT, approval_timeout_seconds)
    return {"strategy": chosen, "gray_steps": steps or list(DEFAULT_GRAY_STEPS),
            "stable_seconds": stable_seconds, "batch_size": batch_size, "approval": policy,
            "approval_timeout_seconds": approval_timeout_seconds}


def check_gray_steps(steps: list[str], replicas: int) -> list[str]:
    """Each step is N replicas (1..24, at most the replica count), N% (1..100) or ``gate``
    (wait for promote); the last replica step must reach every replica."""
    cleaned = [step.strip().lower() for step in steps]
    if not any(step != GATE for step in cleaned):
        raise CatalogueError("gray steps need at least one step such as 100%, e.g. 1,50%,100%")
    for step in cleaned:
        if step == GATE:
            continue
        match = _STEP.fullmatch(step)
        if match is None:
            raise CatalogueError(f"invalid gray step {step!r}: use a replica count like 1, "
                                 f"a percentage like 50%, or gate")
        number, percent = int(match.group(1)), bool(match.group(2))
        if percent and not 1 <= number <= 100:
            raise CatalogueError(f"gray step {step!r}: a percentage must be between 1% and 100%")
        if not percent and not 1 <= number <= min(REPLICAS_MAX, replicas):
            raise CatalogueError(f"gray step {step!r}: a replica count must be between 1 and "
                                 f"the replica count ({replicas})")
    last = [step for step in cleaned if step != GATE][-1]
    if last not in ("100%", str(replicas)):
        raise CatalogueError(f"the last gray step is {last!r}: it must be 100% (or {replicas}, "
                             f"the replica count) so the new version ends on every replica")
    return cleaned


def parse_duration(text: str, what: str, rule: DurationRule) -> int:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``2d``, within ``rule``'s range."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or len(match.group(1)) > 9:
        raise CatalogueError(f"invalid {what} {text!r}: use seconds like 90, or a number with "
                             f"s, m, h or d, like 15m or 24h")
    try:
        return rule.check(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    except ValueError as error:
        raise CatalogueError(f"{what}: {error}") from None


def _within(rule: DurationRule, seconds: int) -> None:
    try:
        rule.check(seconds)
    except ValueError as error:
        raise CatalogueError(str(error)) from None


def format_duration(seconds: int) -> str:
    """The shortest exact spelling: 86400 → 24h, 90 → 90s, 120 → 2m."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0 and (unit != "d" or seconds // size > 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def policy_text(columns: dict[str, Any]) -> dict[str, Any]:
    """The rollout columns with enums as plain strings, for the JSON audit detail."""
    return {key: str(value) if isinstance(value, Enum) else value
            for key, value in columns.items()}


def _cpu_value(cpu: str) -> float:
    return int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def _choice(kind: type[_Enum], value: _Enum | str, what: str) -> _Enum:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise CatalogueError(f"unknown {what} {value!r}: use one of {known}") from None
