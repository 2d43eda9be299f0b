"""Property-based bad input: whatever a person (or an attacker) types, each validator either
refuses it with its own one-line error or accepts a value that is safe where it goes (no
whitespace, newlines, shell or config metacharacters, no leading '-')."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalogue.store import CatalogueError
from schemas.durations import LANE_TTL, STABLE
from schemas.http import check_health_path
from schemas.images import check_image_ref
from schemas.lanes import normalise_lane_name
from schemas.sources import SourceRefused, check_ref, check_source
from starter.service.identity import check_user
from starter.service.validation import parse_duration

# Printable text plus the characters that have broken things: newlines, quotes, '#', '$',
# backticks, ';', '%', NUL and other controls, non-ASCII letters.
HOSTILE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
                  max_size=80) | st.text(alphabet=" \n\t\r#$`;'\"%\\/:@.-_~a0Z9", max_size=40)
UNSAFE = re.compile(r"[\s#$`;'\"\\\x00-\x1f\x7f]")
# In HAProxy's configuration (``option httpchk GET <path>``) ';' is an ordinary character
# (a URL sub-delimiter the health path grammar admits); the rest still changes the line.
CONFIG_UNSAFE = re.compile(r"[\s#$`'\"\\\x00-\x1f\x7f]")
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(HOSTILE)
def test_durations_are_refused_in_one_line_or_in_range(text: str) -> None:
    for rule in (LANE_TTL, STABLE):
        try:
            seconds = parse_duration(text, "--ttl", rule)
        except CatalogueError as refused:
            assert "\n" not in str(refused).replace(repr(text), "")
            continue
        assert rule.minimum <= seconds <= rule.maximum


@SETTINGS
@given(HOSTILE)
def test_image_references_are_refused_or_inert(text: str) -> None:
    try:
        accepted = check_image_ref(text)
    except ValueError:
        return
    assert accepted == text and not UNSAFE.search(accepted) and not accepted.startswith("-")


@SETTINGS
@given(HOSTILE)
def test_user_names_are_refused_or_inert(text: str) -> None:
    try:
        accepted = check_user(text)
    except CatalogueError:
        return
    assert not UNSAFE.search(accepted) and "," not in accepted and ":" not in accepted
    assert not accepted.startswith("-")


@SETTINGS
@given(HOSTILE)
def test_health_paths_are_refused_or_safe_in_a_config(text: str) -> None:
    try:
        accepted = check_health_path(text)
    except ValueError:
        return
    assert accepted.startswith("/") and not CONFIG_UNSAFE.search(accepted)


@SETTINGS
@given(HOSTILE)
def test_lane_names_normalise_to_dns_labels_or_are_refused(text: str) -> None:
    try:
        name = normalise_lane_name(text)
    except ValueError:
        return
    assert re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", name)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@SETTINGS
@given(text=HOSTILE)
def test_sources_and_refs_are_refused_or_inert(root: Path, text: str) -> None:
    try:
        ref = check_ref(text)
    except SourceRefused:
        pass
    else:
        assert not ref.startswith("-") and not UNSAFE.search(ref)
    try:
        source = check_source(text, [root])
    except SourceRefused:
        return
    assert not source.startswith("-") and "::" not in source.split("://", 1)[0]
    assert not UNSAFE.search(source)
