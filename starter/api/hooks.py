"""Webhook payloads the receiver understands, parsed into plain values (no I/O here).

* GitLab push and tag push events (``X-Gitlab-Event: Push Hook`` / ``Tag Push Hook``);
  the pusher is a Slipway user through ``SLIPWAY_IDENTITIES`` (unmapped: no release that
  needs approval).
* Registry pushes: the docker distribution notification envelope (``{"events": [...]}``)
  and Harbor's webhook (``{"type": "PUSH_ARTIFACT", "event_data": {...}}``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.identities import slipway_user
from schemas.models import ReleaseRequest
from schemas.sources import check_ref
from starter.api.settings import HookRule

ZERO_SHA = "0" * 40


class WebhookShapeError(ValueError):
    """A delivery whose JSON is not shaped like the event it claims to be (answered 422)."""


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookShapeError(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def _array(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookShapeError(f"{where} must be a JSON array, not {type(value).__name__}")
    return value


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise WebhookShapeError(f"{where} must be a string, not {type(value).__name__}")
    return str(value)


def secret_matches(given: str | None, secret: str) -> bool:
    """Constant-time comparison; an unconfigured secret never matches."""
    if not secret or given is None:
        return False
    return hmac.compare_digest(given.encode(), secret.encode())


def payload_id(body: bytes) -> str:
    """Stable id of a delivery that carries none: a redelivery has the same bytes."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class GitEvent:
    """A push of a branch or a tag, as far as release rules care."""

    kind: str  # "tag" or "branch"
    project: str
    name: str  # tag or branch name
    sha: str
    user: str


def parse_gitlab(event_header: str, payload: dict[str, Any]) -> GitEvent | None:
    """The push described by a GitLab webhook, or None for events we don't act on
    (other kinds, deletions of a branch or tag). Raises WebhookShapeError for a payload not
    shaped like a push, SourceRefused for a ref or commit that is not a plain git ref name."""
    kind = payload.get("object_kind") or {
        "Push Hook": "push", "Tag Push Hook": "tag_push"}.get(event_header, "")
    if kind not in ("push", "tag_push"):
        return None
    ref = _text(payload.get("ref"), "ref")
    sha = _text(payload.get("checkout_sha") or payload.get("after"), "checkout_sha")
    if not sha or sha == ZERO_SHA:  # deleted ref: nothing to release
        return None
    project = _text(_object(payload.get("project"), "project").get("path_with_namespace"),
                    "project.path_with_namespace")
    user = _text(payload.get("user_username") or payload.get("user_name"), "user_username")
    if kind == "tag_push" and ref.startswith("refs/tags/"):
        event = GitEvent("tag", project, ref.removeprefix("refs/tags/"), sha, user)
    elif kind == "push" and ref.startswith("refs/heads/"):
        event = GitEvent("branch", project, ref.removeprefix("refs/heads/"), sha, user)
    else:
        return None
    # Refs from a webhook reach git on the worker: refuse what git could take for an option.
    check_ref(event.name, "pushed ref")
    check_ref(event.sha, "pushed commit")
    return event


def requests_for(event: GitEvent, rules: list[HookRule],
                 identities: Mapping[str, str] | None = None) -> list[ReleaseRequest]:
    """The releases the rules ask for: a tag releases the tag (labelled with it); a branch
    releases the pushed commit, so a later push cannot change what this release builds.
    The requester is the pusher's Slipway identity (``SLIPWAY_IDENTITIES``)."""
    requester = slipway_user("gitlab", event.user, identities or {})
    found = []
    for rule in rules:
        if event.kind == "tag" and rule.matches_tag(event.project, event.name):
            found.append(ReleaseRequest(app=rule.app, env=rule.env, ref=event.name,
                                        version_label=event.name,
                                        requested_by=requester, trigger="hook"))
        elif event.kind == "branch" and rule.matches_branch(event.project, event.name):
            found.append(ReleaseRequest(app=rule.app, env=rule.env, ref=event.sha,
                                        requested_by=requester, trigger="hook"))
    return found


def unmapped_pusher(event: GitEvent, identities: Mapping[str, str] | None = None) -> str:
    """``gitlab:<account>`` when ``SLIPWAY_IDENTITIES`` maps the pusher to no Slipway user,
    else "". An unmapped account cannot be told apart from an approver (``gitlab:alice.w``
    may be ``alice``), so a release that needs approval is refused for it."""
    account = f"gitlab:{event.user}"
    return "" if (identities or {}).get(account) else account


def unmapped_refusal(account: str, event: GitEvent, request: ReleaseRequest) -> str:
    """Why a release the hook would start for unmapped ``account`` is refused, and the fix."""
    what = f"tag {event.name}" if event.kind == "tag" else f"{event.name} at {event.sha[:12]}"
    return (f"releases of {request.app} on {request.env} need approval, and the pusher of "
            f"{what}, {account}, maps to no Slipway user, so the four-eyes rule could not "
            "tell them from an approver: add "
            f'"{account}": "<slipway user>" to SLIPWAY_IDENTITIES on the receiver, or '
            f"release it by hand (`slipway release {request.app} {request.env} --ref "
            f"{request.ref}`)")


@dataclass(frozen=True)
class ImagePush:
    """One image manifest pushed to a registry."""

    event_id: str
    repository: str
    tag: str
    digest: str
    source: str  # "distribution" or "harbor"
    actor: str = ""


def parse_registry(body: bytes, payload: dict[str, Any]) -> list[ImagePush]:
    """Manifest pushes in a distribution envelope or a Harbor webhook (others are ignored)."""
    pushes: list[ImagePush] = []
    if "events" in payload:
        for number, raw in enumerate(_array(payload["events"], "events")):
            event = _object(raw, f"events[{number}]")
            target = _object(event.get("target"), f"events[{number}].target")
            # Blob uploads notify too; only a manifest is an image (or an index of them).
            is_manifest = ("manifest" in _text(target.get("mediaType"), "target.mediaType")
                           or target.get("tag"))
            if _text(event.get("action"), "action") != "push" or not is_manifest:
                continue
            repository = _text(target.get("repository"), "target.repository")
            if not repository:
                raise WebhookShapeError(f"events[{number}].target names no repository")
            pushes.append(ImagePush(
                event_id=_text(event.get("id"), "id") or payload_id(json.dumps(event).encode()),
                repository=repository, tag=_text(target.get("tag"), "target.tag"),
                digest=_text(target.get("digest"), "target.digest"), source="distribution",
                actor=_text(_object(event.get("actor"), "actor").get("name"), "actor.name")))
    elif payload.get("type") in ("PUSH_ARTIFACT", "pushImage"):
        data = _object(payload.get("event_data"), "event_data")
        repository = _text(_object(data.get("repository"), "event_data.repository")
                           .get("repo_full_name"), "repo_full_name")
        for index, raw in enumerate(_array(data.get("resources"), "event_data.resources")):
            resource = _object(raw, f"event_data.resources[{index}]")
            # Harbor sends no event id: the delivery's bytes are its identity.
            pushes.append(ImagePush(
                event_id=f"{payload_id(body)}#{index}", repository=repository,
                tag=_text(resource.get("tag"), "tag"), digest=_text(resource.get("digest"),
                                                                    "digest"),
                source="harbor", actor=_text(payload.get("operator"), "operator")))
    elif "type" not in payload:  # other Harbor event types are fine, and ignored
        raise WebhookShapeError("neither a distribution notification ({\"events\": [...]}) "
                                "nor a Harbor push webhook ({\"type\": \"PUSH_ARTIFACT\"})")
    return pushes
