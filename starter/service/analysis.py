"""Canary-analysis policies of environments: load, check, set, show, and run one on demand.

A policy is checked as a whole before it is stored (unknown metric, NaN threshold, a query
Prometheus cannot parse, a web URL whose host is not on SLIPWAY_ANALYSIS_WEB_HOSTS or is a
metadata address, more intervals than a history holds), so a release never starts with one
its providers would refuse.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from pydantic import ValidationError
from sqlmodel import col, select

from activities.analysis import MetricProviders
from catalogue.analysis import measurements_of, policy_of
from catalogue.releases import env_key
from catalogue.store import CatalogueError, Store, audit, find_app, find_env, latest_baseline
from catalogue.tables import Environment, Release
from integrations.web.hosts import WebHostRefused
from schemas.analysis import AnalysisPolicy, AnalysisTarget, MeasureInput, Measurement
from schemas.enums import ReleaseState, Strategy
from schemas.settings import Settings
from workflows.steps import (
    analysis_ticks_problem,
    analysis_wait_problem,
    gray_plan,
    rolling_plan,
)


def _providers(settings: Settings) -> MetricProviders:
    try:
        return MetricProviders.from_settings(settings)
    except WebHostRefused as refused:  # a malformed SLIPWAY_ANALYSIS_WEB_HOSTS entry
        raise CatalogueError(str(refused)) from None


def load_policy(path: Path) -> AnalysisPolicy:
    """Read a policy file (YAML or JSON: JSON is YAML) and validate it."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise CatalogueError(f"cannot read analysis policy {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise CatalogueError(f"analysis policy {path} is not YAML or JSON: {error}") from None
    return parse_policy(raw, str(path))


def parse_policy(raw: object, source: str = "the analysis policy") -> AnalysisPolicy:
    try:
        return AnalysisPolicy.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, item['loc'])) or 'policy'}: {item['msg']}"
            for item in error.errors(include_url=False))
        raise CatalogueError(f"{source} is not a valid analysis policy: {problems}") from None


def check_policy(policy: AnalysisPolicy, env: Environment, app: str,
                 settings: Settings) -> None:
    """Refuse a policy the environment's rollout or the providers cannot carry: no silent
    off (a rollout without an analysed wait), no more intervals than a history holds."""
    if problem := analysis_wait_problem(env.stable_seconds, policy,
                                        recreate=env.strategy == Strategy.RECREATE):
        raise CatalogueError(f"{app} {env.name}: {problem}")
    waits = _stable_waits(env)
    if problem := analysis_ticks_problem(env.stable_seconds, waits, policy):
        raise CatalogueError(problem)
    target = AnalysisTarget(app=app, env=env.name,
                            env_key=env_key(app, env.env_type, env.cluster),
                            cluster=env.cluster, version=1)
    if problems := _providers(settings).problems(policy, target):
        raise CatalogueError("bad analysis policy: " + "; ".join(problems))


def set_policy(store: Store, app: str, env: str, policy: AnalysisPolicy | None, *,
               settings: Settings, actor: str) -> Environment:
    """Store ``policy`` for the environment (None: health checks only)."""
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        if policy is not None:
            check_policy(policy, found, owner.name, settings)
        found.analysis = policy.model_dump(mode="json") if policy else {}
        session.add(found)
        audit(session, "env.analysis_set", actor=actor, app=owner.name, env=found.name,
              metrics=[m.name for m in policy.metrics] if policy else [])
        session.commit()
        session.refresh(found)
        return found


def policy_for(store: Store, app: str, env: str) -> tuple[Environment, AnalysisPolicy | None]:
    with store.session() as session:
        found = find_env(session, find_app(session, app), env)
        return found, policy_of(found.analysis)


def run_policy(store: Store, app: str, env: str, *, settings: Settings,
               window_seconds: float) -> list[Measurement]:
    """Measure the policy against what runs now, over ``window_seconds``, without releasing.

    While a release runs, its new version is the canary and the old one the baseline;
    otherwise the current baseline's version is measured on its own."""
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        policy = policy_of(found.analysis)
        if policy is None:
            raise CatalogueError(f"{app} {found.name} has no analysis policy: set one with "
                                 f"`slipway analysis set {app} {found.name} FILE`")
        running = session.exec(select(Release).where(
            Release.env_id == found.id, Release.state == ReleaseState.RUNNING)
            .order_by(col(Release.id).desc())).first()
        current = latest_baseline(session, found.id or 0)
        if running is not None:
            version, baseline = running.to_version, running.from_version
        elif current is not None:
            version, baseline = current.version, 0
        else:
            raise CatalogueError(f"nothing runs on {app} {found.name} yet: release it first")
        target = AnalysisTarget(app=owner.name, env=found.name,
                                env_key=env_key(owner.name, found.env_type, found.cluster),
                                cluster=found.cluster, version=version,
                                baseline_version=baseline)
    providers = _providers(settings)
    names = [metric.name for metric in policy.metrics]
    start = providers.measure(MeasureInput(policy=policy, metrics=[], target=target))
    time.sleep(window_seconds)
    return providers.measure(MeasureInput(
        policy=policy, metrics=names, target=target,
        since={name: start.counters for name in names})).measurements


def release_with_analysis(store: Store, app: str, env: str,
                          release_id: int | None) -> tuple[Release, list[Measurement]]:
    """One release of the environment (default: the latest) and its measurements."""
    with store.session() as session:
        found = find_env(session, find_app(session, app), env)
        query = select(Release).where(Release.env_id == found.id)
        if release_id is not None:
            query = query.where(Release.id == release_id)
        item = session.exec(query.order_by(col(Release.id).desc())).first()
        if item is None:
            raise CatalogueError(f"no release {release_id} of {app} {found.name}: see "
                                 f"`slipway release history {app} {found.name}`"
                                 if release_id is not None
                                 else f"no releases of {app} on {found.name} yet")
        session.expunge(item)
    return item, measurements_of(store, item.id or 0)


def policy_text(policy: AnalysisPolicy) -> str:
    """The policy as the YAML a person would write (defaults left out)."""
    return yaml.safe_dump(json.loads(policy.model_dump_json(exclude_defaults=True)),
                          sort_keys=False)


def _stable_waits(env: Environment) -> int:
    if env.strategy == Strategy.GRAY:
        steps = gray_plan(env.gray_steps, env.replicas, env.replicas)
    elif env.strategy == Strategy.ROLLING:
        steps = rolling_plan(env.batch_size, env.replicas, env.replicas)
    else:  # recreate: one analysed wait once the new version serves
        return 1
    return sum(1 for step in steps if not step.gate)
