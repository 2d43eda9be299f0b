"""Canary analysis in the catalogue: each environment's policy, each release's measurements."""

from __future__ import annotations

from sqlmodel import col, select

from catalogue.store import Store
from catalogue.tables import AnalysisMeasurement
from schemas.analysis import AnalysisPolicy, Measurement, Mode, Verdict


def policy_of(raw: dict[str, object]) -> AnalysisPolicy | None:
    """An environment's stored policy; None when it has none (health checks only)."""
    return AnalysisPolicy.model_validate(raw) if raw else None


def record_measurements(store: Store, release_id: int, measurements: list[Measurement]) -> None:
    with store.session() as session:
        for item in measurements:
            session.add(AnalysisMeasurement(
                release_id=release_id, step=item.step, metric=item.metric, mode=str(item.mode),
                at=item.at, value=item.value, baseline=item.baseline, sample=item.sample,
                condition=item.condition, verdict=str(item.verdict), detail=item.detail))
        session.commit()


def measurements_of(store: Store, release_id: int) -> list[Measurement]:
    """A release's measurements in the order they were taken."""
    with store.session() as session:
        rows = session.exec(select(AnalysisMeasurement)
                            .where(AnalysisMeasurement.release_id == release_id)
                            .order_by(col(AnalysisMeasurement.at),
                                      col(AnalysisMeasurement.id))).all()
        return [Measurement(metric=row.metric, mode=Mode(row.mode), step=row.step, at=row.at,
                            value=row.value, baseline=row.baseline, sample=row.sample,
                            condition=row.condition, verdict=Verdict(row.verdict),
                            detail=row.detail) for row in rows]
