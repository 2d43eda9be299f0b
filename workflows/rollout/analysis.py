"""A stable wait judged by canary analysis: health probes plus the policy's metrics.

Every policy interval the wait wakes: one activity watches health for the interval, one
measures the metrics that are due (recorded in the catalogue, shown in ``status`` and in the
Web UI's current details with the time left). ``StepJudge`` turns measurements into a
decision: an ``enforcing`` metric over its failure limit fails the step (the usual
compensation rolls back); an ``advisory`` one, a provider that keeps erroring, or a window
that ends without one conclusive passing figure pauses the release for a person to
``promote`` or ``abort``. ``dry-run`` metrics are measured and shown, and never decide.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.analysis import AnalysisActivities
    from schemas.analysis import (
        AnalysisPolicy,
        AnalysisTarget,
        Counters,
        MeasureInput,
        Measurement,
        MeasureResult,
        Mode,
        Verdict,
    )
    from schemas.models import HealthCheckInput, WatchHealthInput
    from workflows.rollout.base import Rollout

# Health is still probed this often inside each analysis interval.
HEALTH_INTERVAL_SECONDS = 10
# Runs that started before a first release's inconclusive window stopped holding it keep
# their gate on replay.
FIRST_RELEASE_PATCH = "first-release-inconclusive-goes-on"


@dataclass(frozen=True)
class Decision:
    """``fail``: roll back; ``pause``: a person decides (promote or abort). ``inconclusive``:
    paused only because no figure proved the step good (nor bad)."""

    action: str
    reason: str
    inconclusive: bool = False


class StepJudge:
    """The verdict of one step's measurements so far (pure, deterministic)."""

    def __init__(self, policy: AnalysisPolicy) -> None:
        self.policy = policy
        self.failures: Counter[str] = Counter()
        self.errors_in_row: Counter[str] = Counter()
        self.passes: Counter[str] = Counter()

    def add(self, measurement: Measurement) -> Decision | None:
        metric = self.policy.metric(measurement.metric)
        name = metric.name
        if measurement.verdict == Verdict.ERROR:
            self.errors_in_row[name] += 1
        else:
            self.errors_in_row[name] = 0
        if measurement.verdict == Verdict.PASSED:
            self.passes[name] += 1
        if measurement.verdict == Verdict.FAILED:
            self.failures[name] += 1
        if metric.mode == Mode.DRY_RUN:
            return None
        if self.failures[name] > metric.failure_limit:
            reason = (f"{name} failed {self.failures[name]}× (limit {metric.failure_limit}): "
                      f"{measurement.detail}")
            return Decision("fail" if metric.mode == Mode.ENFORCING else "pause", reason)
        if self.errors_in_row[name] > metric.consecutive_error_limit:
            return Decision("pause", f"{name} could not be measured "
                                     f"{self.errors_in_row[name]}× in a row: {measurement.detail}")
        return None

    def at_end(self) -> Decision | None:
        """The window is over: every deciding metric needs one conclusive passing figure."""
        unproven = [metric.name for metric in self.policy.metrics
                    if metric.mode != Mode.DRY_RUN and not self.passes[metric.name]]
        if unproven:
            return Decision("pause", f"inconclusive: no conclusive passing measurement of "
                                     f"{', '.join(unproven)} (too little traffic or no data)",
                            inconclusive=True)
        return None


class AnalysedWait:
    """One step's stable window with analysis; ``run`` returns when the step may go on."""

    def __init__(self, rollout: Rollout, policy: AnalysisPolicy, replicas: int,
                 step: int) -> None:
        self.rollout = rollout
        self.policy = policy
        self.replicas = replicas
        self.step = step
        self.judge = StepJudge(policy)
        plan = rollout.plan
        self.target = AnalysisTarget(
            app=plan.app, env=plan.env, env_key=plan.env_key, cluster=plan.cluster,
            version=plan.to_version,
            baseline_version=rollout.old_version if rollout.old_count else 0)
        self.since: dict[str, Counters] = {}
        # Seconds of the window watched since each metric was last measured.
        self.waited: dict[str, float] = {metric.name: 0.0 for metric in policy.metrics}

    async def run(self) -> None:
        wf, plan = self.rollout.wf, self.rollout.plan
        await self._measure([], "analysis: traffic counters at the start of the step")
        remaining = float(plan.stable_seconds)
        while remaining > 0:
            tick = min(float(self.policy.interval_seconds), remaining)
            ends_at = workflow.now() + timedelta(seconds=remaining)
            wf.show_analysis(ends_at)
            started = workflow.now()
            with wf.looking(plan.to_version, "watch_health", self.replicas):
                problems: list[str] | None = await self.rollout.watch_health(
                    WatchHealthInput(check=self._health_check(), seconds=tick,
                                     interval_seconds=min(HEALTH_INTERVAL_SECONDS, tick),
                                     report=True),
                    f"v{plan.to_version} stays healthy for {tick:.0f}s",
                    timeout=timedelta(seconds=tick + 120))
            # A watch that ends without problems watched its whole window; an interrupted one
            # as long as it ran.
            elapsed = tick if problems == [] else (workflow.now() - started).total_seconds()
            remaining -= elapsed
            if problems:
                raise ApplicationError(f"v{plan.to_version} unhealthy while waiting for stable: "
                                       + "; ".join(problems), type="Unhealthy",
                                       non_retryable=True)
            if problems is None:  # a person intervened
                await wf.checkpoint()  # raises on abort, waits while paused
                if wf.take_promote():
                    wf.event("stable wait skipped by promote")
                    return
            for name in self.waited:
                self.waited[name] += elapsed
            due = [metric.name for metric in self.policy.metrics
                   if self.waited[metric.name] >= metric.interval_seconds - 0.5
                   or remaining <= 0]
            if due and await self._judge(await self._measure(due, "analysis: measure "
                                                                  + ", ".join(due))):
                return
        wf.show_analysis(None)
        if (decision := self.judge.at_end()) is not None:
            if (decision.inconclusive and self.rollout.plan.current is None
                    and workflow.patched(FIRST_RELEASE_PATCH)):
                # A first release has no users yet and nothing to compare against: a gate
                # here would wait for a person on every new environment. Only a lack of
                # figures passes; a failing figure still decides above.
                wf.event(f"analysis: step {self.step}: no traffic to judge on a first release "
                         f"({decision.reason}); going on")
                return
            await self._decide(decision)

    async def _measure(self, metrics: list[str], summary: str) -> list[Measurement]:
        wf, plan = self.rollout.wf, self.rollout.plan
        result: MeasureResult = await wf.act(
            AnalysisActivities.measure_analysis,
            MeasureInput(policy=self.policy, metrics=metrics, target=self.target,
                         release_id=plan.release_id, step=self.step, since=self.since),
            summary, **self.rollout.lb)  # HAProxy's counters: on its host
        for name in metrics or list(self.waited):
            self.since[name] = result.counters
            self.waited[name] = 0.0
        return result.measurements

    async def _judge(self, measurements: list[Measurement]) -> bool:
        """Record the measurements; True when a person ended the wait (promote)."""
        self.rollout.wf.record_analysis(measurements)
        for measurement in measurements:
            if (decision := self.judge.add(measurement)) is not None:
                await self._decide(decision)
                return True
        return False

    async def _decide(self, decision: Decision) -> None:
        wf, plan = self.rollout.wf, self.rollout.plan
        if decision.action == "fail":
            raise ApplicationError(f"canary analysis failed at step {self.step}: "
                                   f"{decision.reason}", type="AnalysisFailed",
                                   non_retryable=True)
        wf.show_analysis(None)
        await wf.alert(f"analysis needs a decision: {plan.app}@{plan.env} v{plan.to_version}",
                       f"step {self.step}: {decision.reason}. Approvers "
                       f"{', '.join(plan.approvers) or '(none listed)'}: `slipway promote "
                       f"{plan.app} {plan.env}` to continue or `slipway abort {plan.app} "
                       f"{plan.env}` to roll back")
        await wf.gate(f"step {self.step}: analysis {decision.reason}; promote to continue, "
                      "abort to roll back")

    def _health_check(self) -> HealthCheckInput:
        plan = self.rollout.plan
        return HealthCheckInput(version=self.rollout.ref(plan.to_version),
                                replicas=self.replicas, port=plan.ports[0],
                                health_path=plan.health_path)
