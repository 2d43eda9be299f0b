"""Durable orchestration, deterministic only: ReleaseWorkflow, SwimlaneWorkflow, JanitorWorkflow
and the rollout strategies."""
