"""The fleet's latency model: how well the search predicts each device class's measurements.

Every job with `algorithm: surrogate` predicts hardware metrics from every measurement of
that device class across jobs (on the graphs its exporter writes, `candidates.graph_revision`)
before it evaluates an offspring, and stores the prediction with the candidate; this route
compares them with what the phones then measured, pooled over graph revisions.
"""

from __future__ import annotations

from fastapi import APIRouter, Path

from api.schemas.public import LatencyModelPublic, PredictorAccuracy
from core.prediction_accuracy import prediction_accuracy
from store import results as store

from .deps import SessionsDep

router = APIRouter(prefix="/device-classes", tags=["devices"])


@router.get("/{device_class}/latency-model", response_model=LatencyModelPublic)
def latency_model(
    sessions: SessionsDep, device_class: str = Path(min_length=1, max_length=128)
) -> LatencyModelPublic:
    measured, pairs = store.device_class_predictions(sessions, device_class)
    return LatencyModelPublic(
        device_class=device_class,
        measured_candidates=measured,
        metrics={m: PredictorAccuracy(**a) for m, a in prediction_accuracy(pairs).items()},
    )
