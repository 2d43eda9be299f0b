"""Creating and removing the resources of a swimlane (泳道), one ledger entry at a time.

Every integration is optional: a system that is not configured yields a ledger entry that
says so (``skipped``) and nothing to remove, so a lane on the embedded defaults works with
none of GitLab, Jenkins, Consul or DNS set up. What a lane always gets is a deployment of
each app, dyed with the lane name, on its lane target: the local Docker engine behind an
HAProxy frontend per app (the default), or a Kubernetes namespace per lane.
No Temporal imports: activities/lanes.py wraps this.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlmodel import Session, col, select

from catalogue.releases import env_key, resolve_credentials
from catalogue.store import Store
from catalogue.tables import Application, Baseline, Build, Environment
from integrations.broker.redis_lanes import RedisLaneBroker
from integrations.builders import BuilderSettings
from integrations.consul.config import ConsulConfig
from integrations.dns.rfc2136 import Rfc2136Dns
from integrations.errors import PermanentRuntimeError
from integrations.gitlab.codehost import GitlabCodeHost
from integrations.jenkins.lanes import JenkinsLanes
from integrations.protocols import Progress
from lanes.target import LaneDeployment, LaneTarget
from schemas.lanes import LaneDeployInput, LaneResourceInput, LedgerEntry, ResourceKind
from schemas.models import ImageSpec


class LaneSettings(BaseSettings):
    """Swimlane knobs, from ``SLIPWAY_``-prefixed variables, each with a working default."""

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", extra="ignore")

    lane_base_branch: str = "master"  # feature/<lane> branches start here when missing
    lane_source_env: str = "test"  # the env type whose baseline a lane deploys (QA)
    lane_topics: list[str] = Field(default_factory=list)  # dyeing: lane consumer groups
    # The broker of message lanes (Redis streams): redis://host:port/db, no password in it;
    # empty: lanes get no consumer groups. The password is read by credential name.
    lane_broker_url: str = ""
    lane_broker_credential: str = "lane-broker"
    lane_deadline_seconds: float = 300.0
    lane_cluster: str = ""  # the cluster lanes run on (settings.clusters); empty: the default
    consul_url: str = ""
    consul_credential: str = "consul"  # name; value is the ACL token
    config_prefix: str = "config"
    config_source: str = "it"  # the integration-test config a lane's config forks from
    receiver_url: str = ""  # push webhooks point at <receiver_url>/hooks/gitlab
    lane_hook_credential: str = "gitlab-hook"  # name; value is the webhook secret token
    lane_domain: str = ""  # external names <app>-<lane>.<domain>; empty: the DNS zone

    def broker(self, credential: Callable[[str], str]) -> RedisLaneBroker | None:
        """The message lanes' broker, its password read by name; None when not configured."""
        if not self.lane_broker_url:
            return None
        return RedisLaneBroker(self.lane_broker_url,
                               credential(self.lane_broker_credential)
                               if self.lane_broker_credential else "")


class LaneResourceError(PermanentRuntimeError):
    """A lane resource cannot be created as asked; the message says what to change."""


def repository_path(source: str) -> tuple[str, str]:
    """(host, ``group/app``) of a git URL: ``https://host[:port]/group/app.git``,
    ``ssh://git@host[:port]/group/app.git`` or scp-like ``git@host:group/app.git``;
    ("", "") for anything else (a local directory)."""
    source = (source or "").strip()
    if "://" in source:
        parsed = urlparse(source)
        host, path = parsed.hostname or "", parsed.path
    else:
        match = re.fullmatch(r"[^@/\s]+@([^:/\s]+):(\S+)", source)
        if not match:
            return ("", "")
        host, path = match.group(1), match.group(2)
    path = path.strip("/").removesuffix(".git")
    return (host, path) if host and path else ("", "")


def gitlab_project(source: str, gitlab_url: str) -> str:
    """``group/app`` of a git URL on the GitLab host, or "" when the source lives elsewhere."""
    host, path = repository_path(source)
    if not gitlab_url or host != (urlparse(gitlab_url).hostname or ""):
        return ""
    return path


class LaneResources:
    """Creates and removes one kind of lane resource per call; idempotent by key."""

    def __init__(self, store: Store, target: LaneTarget, credential: Callable[[str], str],
                 dns: Rfc2136Dns | None = None, lane_settings: LaneSettings | None = None,
                 builder_settings: BuilderSettings | None = None,
                 dns_target: str = "127.0.0.1") -> None:
        self.store = store
        self.target = target
        self.credential = credential
        self.dns = dns
        self.settings = lane_settings or LaneSettings()
        self.builders = builder_settings or BuilderSettings()
        self.dns_target = dns_target

    # -- dispatch ---------------------------------------------------------------------------

    def create(self, data: LaneResourceInput, progress: Progress | None = None) -> LedgerEntry:
        creators: dict[ResourceKind, Callable[[LaneResourceInput], dict[str, Any]]] = {
            ResourceKind.NAMESPACE: self._namespace, ResourceKind.MESSAGES: self._messages,
            ResourceKind.BRANCH: self._branch,
            ResourceKind.CI_JOB: self._ci_job, ResourceKind.CONFIG: self._config,
            ResourceKind.DNS: self._dns, ResourceKind.WEBHOOK: self._webhook,
            ResourceKind.DEPLOYMENT: lambda d: self._deployment(d, progress),
        }
        detail = creators[data.kind](data)
        return LedgerEntry(kind=data.kind, key=data.key, detail=detail, app=data.app)

    def delete(self, entry: LedgerEntry) -> None:
        """Remove what the entry created; already gone, or never created, is fine."""
        detail = entry.detail
        if detail.get("skipped"):
            return
        if entry.kind == ResourceKind.NAMESPACE:
            self.target.delete_namespace(detail)
        elif entry.kind == ResourceKind.MESSAGES:
            with self._broker() as broker:
                broker.close_lane(detail)
        elif entry.kind == ResourceKind.BRANCH and detail.get("created"):
            self._gitlab().delete_branch(detail["project"], entry.key)
        elif entry.kind == ResourceKind.CI_JOB and detail.get("folder_created"):
            self._jenkins().delete_folder(detail["folder"])
        elif entry.kind == ResourceKind.CI_JOB and detail.get("job_created"):
            # The folder was there before the lane: remove only the job the lane made.
            self._jenkins().delete_job(detail["folder"], entry.app)
        elif entry.kind == ResourceKind.CONFIG:
            self._consul().delete_prefix(detail["prefix"])
        elif entry.kind == ResourceKind.DNS and self.dns is not None:
            for name, rtype in detail.get("records", []):
                self.dns.delete(name, rtype)
        elif entry.kind == ResourceKind.WEBHOOK:
            self._gitlab().delete_project_hook(detail["project"], int(detail["hook_id"]))
        elif entry.kind == ResourceKind.DEPLOYMENT:
            self.target.remove(detail, entry.app)

    def redeploy(self, data: LaneDeployInput, progress: Progress | None = None) -> LedgerEntry:
        """Run ``data.image`` (a push's build) as the app's next lane version, then retire
        the one the entry names: the app's lane entry point keeps serving throughout."""
        entry = data.entry
        current = int(entry.detail.get("version", 1))
        with self.store.session() as session:
            _, envs = self._app_envs(session, entry.app)
        route = entry.detail.get("route") or {}
        detail = self.target.deploy(self._want(data.lane, entry.app, data.image, envs[0],
                                               current + 1, bool(route.get("fail_closed"))),
                                    progress)
        self.target.retire(entry.detail, entry.app)
        return entry.model_copy(update={"detail": {**detail, "from": "push"}})

    # -- creators ---------------------------------------------------------------------------

    def _namespace(self, data: LaneResourceInput) -> dict[str, Any]:
        return self.target.create_namespace(data.lane)

    def _messages(self, data: LaneResourceInput) -> dict[str, Any]:
        if not self.settings.lane_broker_url:
            return {"skipped": "no message broker configured (SLIPWAY_LANE_BROKER_URL)"}
        if not self.settings.lane_topics:
            return {"skipped": "no topics configured (SLIPWAY_LANE_TOPICS)"}
        with self._broker() as broker:
            return broker.open_lane(data.lane, self.settings.lane_topics, data.messages)

    def _branch(self, data: LaneResourceInput) -> dict[str, Any]:
        project = self._project(data.app)
        if not project:
            return {"skipped": "GitLab not configured or the app's source is not on it"}
        created = self._gitlab().ensure_branch(project, data.key, self.settings.lane_base_branch)
        return {"project": project, "created": created}

    def _ci_job(self, data: LaneResourceInput) -> dict[str, Any]:
        if not self.builders.jenkins_url:
            return {"skipped": "Jenkins not configured (SLIPWAY_JENKINS_URL)"}
        jenkins = self._jenkins()
        folder_created = jenkins.ensure_folder(data.lane)
        job_created = jenkins.ensure_job(data.lane, data.app)
        return {"folder": data.lane, "folder_created": folder_created, "job": data.key,
                "job_created": job_created}

    def _config(self, data: LaneResourceInput) -> dict[str, Any]:
        if not self.settings.consul_url:
            return {"skipped": "Consul not configured (SLIPWAY_CONSUL_URL)"}
        prefix = self.settings.config_prefix
        source = f"{prefix}/{self.settings.config_source}/{data.app}"
        target = f"{prefix}/{data.lane}/{data.app}"
        return {"prefix": target, "keys": self._consul().fork(source, target)}

    def _dns(self, data: LaneResourceInput) -> dict[str, Any]:
        if self.dns is None:
            return {"skipped": "DNS not configured (SLIPWAY_DNS_SERVER)"}
        external = f"{data.app}-{data.lane}"
        if self.settings.lane_domain:
            external = f"{external}.{self.settings.lane_domain}."
        records = [[data.key, "A"], [external, "A"]]
        for name, rtype in records:
            self.dns.upsert(name, rtype, self.dns_target)
        return {"records": records}

    def _webhook(self, data: LaneResourceInput) -> dict[str, Any]:
        project = self._project(data.app)
        if not project or not self.settings.receiver_url:
            return {"skipped": "GitLab or SLIPWAY_RECEIVER_URL not configured"}
        # One hook per lane (its URL names the lane): deleting a lane never removes a hook
        # another lane, or the release hook rules, rely on.
        url = f"{self.settings.receiver_url.rstrip('/')}/hooks/gitlab?lane={data.lane}"
        hook_id = self._gitlab().ensure_project_hook(
            project, url, self.credential(self.settings.lane_hook_credential), tag_push=False)
        return {"project": project, "hook_id": hook_id, "url": url}

    def _deployment(self, data: LaneResourceInput, progress: Progress | None) -> dict[str, Any]:
        """Run the app in the lane, dyed with the lane name: the newest build of the lane's
        branch head when there is one (a lane re-created for a branch with pushes), else the
        app's QA baseline."""
        image, env, what = self._lane_image(data.app, data.lane)
        detail = self.target.deploy(self._want(data.lane, data.app, image, env, 1,
                                               data.fail_closed), progress)
        return {**detail, "from": what}

    def _want(self, lane: str, app: str, image: str, env: Environment,
              version: int, fail_closed: bool = False) -> LaneDeployment:
        """``image`` run the way the app's QA environment runs it, dyed with the lane, and
        routed from that environment's load balancer for the lane's keyed requests."""
        variables = {**resolve_credentials(dict(env.env_vars), self.credential),
                     "SLIPWAY_LANE": lane}
        for topic in self.settings.lane_topics:
            # Dyeing: lane instances consume from lane consumer groups, not QA's.
            variables[f"SLIPWAY_CONSUMER_GROUP_{re.sub(r'[^A-Z0-9]', '_', topic.upper())}"] = \
                f"{topic}-{lane}"
        qa = env.env_type == self.settings.lane_source_env
        return LaneDeployment(lane=lane, app=app, image=image, version=version,
                              ports=list(env.ports or [8080]), env_vars=variables, cpu=env.cpu,
                              memory=env.memory, health_path=env.health_path,
                              route_key=env_key(app, env.env_type, env.cluster) if qa else "",
                              fail_closed=fail_closed)

    # -- helpers ----------------------------------------------------------------------------

    def _lane_image(self, app: str, lane: str) -> tuple[str, Environment, str]:
        """What the lane runs for ``app`` (by digest, never by a tag that moves), the
        environment whose settings it runs with (the QA one first), and where it came from."""
        with self.store.session() as session:
            found, ordered = self._app_envs(session, app)
            build = self._branch_build(found, lane)
            if build is not None:
                image = ImageSpec(image=build.image, digest=build.digest).run_ref
                return image, ordered[0], f"build of feature/{lane} at {build.ref[:12]}"
            for env in ordered:
                baseline = session.exec(select(Baseline).where(Baseline.env_id == env.id)
                                        .order_by(col(Baseline.version).desc())).first()
                if baseline is not None:
                    image = ImageSpec(image=baseline.image, digest=baseline.digest).run_ref
                    return image, env, f"baseline {baseline.version} of {env.name}"
        raise LaneResourceError(f"{app} has no baseline to deploy into a lane: release it to "
                                f"{self.settings.lane_source_env} first")

    def _app_envs(self, session: Session, app: str) -> tuple[Application, list[Environment]]:
        """The app and its environments, the one lanes copy (QA) first."""
        found = session.exec(select(Application).where(Application.name == app)).first()
        if found is None:
            raise LaneResourceError(f"unknown application {app!r}: register it first")
        envs = list(session.exec(select(Environment).where(Environment.app_id == found.id)))
        if not envs:
            raise LaneResourceError(f"{app} has no environment whose settings a lane could "
                                    f"run it with: add a {self.settings.lane_source_env} "
                                    "environment first")
        return found, sorted(envs, key=lambda e: e.env_type != self.settings.lane_source_env)

    def _branch_build(self, app: Application, lane: str) -> Build | None:
        """The newest build of the commit ``feature/<lane>`` points at, if GitLab knows the
        branch and something (a push to an earlier lane of this name, CI) built that commit."""
        project = gitlab_project(app.source, self.builders.gitlab_url)
        if not project:
            return None
        head = self._gitlab().branch_head(project, f"feature/{lane}")
        if not head:
            return None
        with self.store.session() as session:
            return session.exec(select(Build).where(Build.app_id == app.id, Build.ref == head)
                                .order_by(col(Build.id).desc())).first()

    def _project(self, app: str) -> str:
        with self.store.session() as session:
            found = session.exec(select(Application).where(Application.name == app)).first()
        return gitlab_project(found.source if found else "", self.builders.gitlab_url)

    def _gitlab(self) -> GitlabCodeHost:
        return GitlabCodeHost(self.builders.gitlab_url,
                              self.credential(self.builders.gitlab_credential))

    def _jenkins(self) -> JenkinsLanes:
        user, _, token = self.credential(self.builders.jenkins_credential).partition(":")
        return JenkinsLanes(self.builders.jenkins_url, user, token)

    def _broker(self) -> RedisLaneBroker:
        broker = self.settings.broker(self.credential)
        if broker is None:
            raise LaneResourceError("no message broker configured (SLIPWAY_LANE_BROKER_URL)")
        return broker

    def _consul(self) -> ConsulConfig:
        return ConsulConfig(self.settings.consul_url,
                            self.credential(self.settings.consul_credential))
