"""Release trains in the catalogue: open one (validate every member, record the baselines
they start from), close it, list them, and turn a train into its rollback."""

from __future__ import annotations

from sqlmodel import col, select

from catalogue.environments import check_active
from catalogue.holds import check_not_held
from catalogue.rejections import check_request
from catalogue.releases import (
    RecentRollbacks,
    approval_required,
    check_releasable,
    recent_rollback,
)
from catalogue.store import CatalogueError, Store, audit, find_app, find_env, latest_baseline
from catalogue.tables import Train, utcnow
from schemas.enums import ReleaseState
from schemas.models import ReleaseRequest, release_workflow_id
from schemas.trains import (
    FinishTrainInput,
    TrainMember,
    TrainMemberPlan,
    TrainMemberStatus,
    TrainPlan,
    TrainRequest,
    chained,
)


def check_train(store: Store, request: TrainRequest, rollbacks: RecentRollbacks | None = None,
                ) -> tuple[list[TrainMemberPlan], bool, list[str], int]:
    """Every member releasable; (members, approval required, approvers, approval timeout).

    One approval covers the train, so its approvers are those who approve every member that
    needs approval: nobody approves an application they could not approve alone.
    """
    members, approver_sets, timeouts = [], [], []
    rule = rollbacks or RecentRollbacks()
    with store.session() as session:
        for member in request.members:
            app = find_app(session, member.app)
            check_releasable(app)
            env = find_env(session, app, member.env)
            check_active(app.name, env)  # nothing is released into a removed environment
            if member.image is None and member.rollback_to is None and not app.source:
                raise CatalogueError(f"application {app.name!r} has no build source: give "
                                     f"--image {app.name}=REF")
            alone = ReleaseRequest(app=app.name, env=env.name, requested_by=request.requested_by,
                                   rollback_to=member.rollback_to)
            # Held after a manual rollback; a rejected image or baseline is refused.
            check_not_held(app, env, alone.model_copy(update={"train_id": 0}))
            check_request(session, app, env, alone.model_copy(
                update={"image": member.image, "ref": member.ref}))
            recent = recent_rollback(session, env, alone, utcnow(), rule)
            if approval_required(app, env, alone, recent_rollback=recent):
                approver_sets.append(set(app.approvers))
                timeouts.append(env.approval_timeout_seconds)
            current = latest_baseline(session, env.id or 0)
            members.append(TrainMemberPlan(
                app=app.name, env=env.name, from_version=current.version if current else 0,
                workflow_id=release_workflow_id(app.name, env.name)))
    approvers = sorted(set.intersection(*approver_sets)) if approver_sets else []
    if approver_sets and not approvers:
        raise CatalogueError("no approver approves every application of this train that "
                             "needs approval: split the train, or give its apps a common "
                             "approver")
    return members, bool(approver_sets), approvers, min(timeouts, default=86400)


def open_train(store: Store, request: TrainRequest, workflow_id: str, run_id: str,
               rollbacks: RecentRollbacks | None = None) -> TrainPlan:
    """Validate and record the train (once per run: a retried activity finds its row)."""
    members, required, approvers, timeout = check_train(store, request, rollbacks)
    with store.session() as session:
        train = session.exec(select(Train).where(Train.run_id == run_id)).first()
        if train is None:
            train = Train(name=request.name, workflow_id=workflow_id, run_id=run_id,
                          requested_by=request.requested_by, rollback_of=request.rollback_of,
                          members=[TrainMemberStatus(app=m.app, env=m.env,
                                                     from_version=m.from_version,
                                                     workflow_id=m.workflow_id
                                                     ).model_dump(mode="json")
                                   for m in members])
            session.add(train)
            session.flush()
            audit(session, "train.started", actor=request.requested_by, name=request.name,
                  train_id=train.id, apps=[f"{m.app}@{m.env}" for m in members],
                  rollback_of=request.rollback_of)
            session.commit()
        return TrainPlan(train_id=train.id or 0, members=members, approval_required=required,
                         approvers=approvers, approval_timeout_seconds=timeout)


def finish_train(store: Store, data: FinishTrainInput) -> None:
    with store.session() as session:
        train = session.get(Train, data.train_id)
        if train is None:
            raise CatalogueError(f"no train #{data.train_id}")
        if train.finished_at is None:
            train.state = data.state
            train.members = [member.model_dump(mode="json") for member in data.members]
            train.approved_by = data.approved_by
            train.error = data.error
            train.finished_at = utcnow()
            session.add(train)
            audit(session, f"train.{data.state}", name=train.name, train_id=train.id,
                  error=data.error)
            session.commit()


def trains(store: Store, name: str | None = None, limit: int = 20) -> list[Train]:
    """Trains, newest first (of one name when given)."""
    with store.session() as session:
        query = select(Train).order_by(col(Train.id).desc()).limit(limit)
        if name:
            query = query.where(Train.name == name)
        return list(session.exec(query).all())


def rollback_request(store: Store, name: str, requested_by: str) -> TrainRequest:
    """Roll back the latest train called ``name`` as one: every member that wrote a baseline
    goes back to the one it started from, in the reverse of the train's order."""
    found = trains(store, name, limit=1)
    if not found:
        raise CatalogueError(f"no train called {name!r}: see `slipway train list`")
    train = found[0]
    if train.state != ReleaseState.SUCCEEDED:
        raise CatalogueError(f"train {name} (#{train.id}) is {train.state}: only a train that "
                             "succeeded is rolled back as one")
    members = [TrainMemberStatus.model_validate(raw) for raw in train.members]
    back = [m for m in members if m.to_version is not None and m.from_version > 0]
    if len(back) < 2:
        raise CatalogueError(f"train {name} left fewer than two baselines to go back from: "
                             "roll its app back with `slipway rollback APP ENV`")
    order = chained([m.app for m in reversed(back)])
    return TrainRequest(
        name=name, requested_by=requested_by, rollback_of=train.id,
        members=[TrainMember(app=m.app, env=m.env, rollback_to=m.from_version,
                             after=order[m.app]) for m in reversed(back)])
