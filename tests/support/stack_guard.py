"""Prove the test suites leave a running Slipway stack untouched (run by ``.ci/run``).

``python -m tests.support.stack_guard snapshot FILE`` records what the stack configured by
the current environment (the embedded defaults after ``make demo``) holds: the workflows in
its Temporal namespace, the catalogue's audit trail, releases and applications, the
containers labelled with its stack id and what each environment's load balancer answers.
``check FILE`` records it again and exits 1, naming every difference, when anything changed:
a workflow a test started there, a row a test wrote, a container a test removed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import docker
import httpx
from sqlmodel import func, select

from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, Environment, Release
from integrations.docker.runtime import LABEL_STACK
from schemas.settings import Settings
from starter.service.temporal_client import connect


async def _workflows(settings: Settings) -> list[str]:
    client = await connect(settings)
    return sorted([f"{execution.id} {execution.run_id} {execution.status}"
                   async for execution in client.list_workflows()])


def _catalogue(settings: Settings) -> dict[str, Any]:
    store = Store(settings.resolved_database_url())
    with store.session() as session:
        audit = session.exec(select(func.count()).select_from(AuditEvent)).one()
        releases = session.exec(select(func.count()).select_from(Release)).one()
        apps = sorted(app.name for app in session.exec(select(Application)).all())
        ports = sorted(env.lb_port for env in session.exec(select(Environment)).all())
    store.engine.dispose()
    return {"audit_events": audit, "releases": releases, "applications": apps,
            "lb_ports": ports}


def _containers(settings: Settings) -> list[str]:
    client = docker.DockerClient(base_url=settings.clusters[settings.default_cluster].engines[0])
    found = client.containers.list(all=True, filters={"label": LABEL_STACK})
    return sorted(f"{c.name} {c.status}" for c in found
                  if c.labels.get(LABEL_STACK) == settings.stack_label())


def _answers(settings: Settings, ports: list[int]) -> dict[str, str]:
    answers: dict[str, str] = {}
    for port in ports:
        try:
            reply = httpx.get(f"http://{settings.lb_bind_address}:{port}/", timeout=5)
            answers[str(port)] = f"{reply.status_code} {reply.text.strip()}"
        except httpx.HTTPError as error:
            answers[str(port)] = type(error).__name__
    return answers


def snapshot(settings: Settings) -> dict[str, Any]:
    catalogue = _catalogue(settings)
    return {"temporal": f"{settings.temporal_address}/{settings.temporal_namespace}",
            "workflows": asyncio.run(_workflows(settings)), "catalogue": catalogue,
            "containers": _containers(settings),
            "load_balancers": _answers(settings, catalogue["lb_ports"])}


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    found = []
    for key in before:
        if before[key] != after.get(key):
            found.append(f"{key}: before {json.dumps(before[key])}\n"
                         f"{' ' * len(key)}  after  {json.dumps(after.get(key))}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("snapshot", "check"):
        print("usage: python -m tests.support.stack_guard snapshot|check FILE", file=sys.stderr)
        return 2
    command, path = argv[0], Path(argv[1])
    now = snapshot(Settings())
    if command == "snapshot":
        path.write_text(json.dumps(now, indent=2))
        print(f"stack_guard: {len(now['workflows'])} workflows in {now['temporal']}, "
              f"{len(now['containers'])} containers, catalogue {now['catalogue']}")
        return 0
    changed = differences(json.loads(path.read_text()), now)
    if changed:
        print("stack_guard: the tests touched the running stack:\n" + "\n".join(changed),
              file=sys.stderr)
        return 1
    print(f"stack_guard: the running stack is untouched ({len(now['workflows'])} workflows, "
          f"{len(now['containers'])} containers, load balancers {now['load_balancers']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
