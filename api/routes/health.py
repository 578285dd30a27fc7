"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, text

from store import devices as device_store
from store import transaction
from store.models import Device, Job, ProfilingTask

from .deps import SessionsDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up (no database access)."""
    return {"status": "ok"}


@router.get("/ready")
def ready(sessions: SessionsDep) -> dict[str, str]:
    """The database answers (503 otherwise, through the error handler)."""
    with transaction(sessions) as s:
        s.execute(text("SELECT 1"))
    return {"status": "ready"}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(sessions: SessionsDep, settings: SettingsDep) -> str:
    lines = []
    with transaction(sessions) as s:
        jobs = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        tasks = s.execute(
            select(ProfilingTask.state, func.count()).group_by(ProfilingTask.state)
        ).all()
        devices = s.scalars(select(Device)).all()
    lines += ["# HELP tailor_jobs Jobs by status.", "# TYPE tailor_jobs gauge"]
    lines += [f'tailor_jobs{{status="{status}"}} {count}' for status, count in jobs]
    lines += [
        "# HELP tailor_profiling_tasks Profiling tasks by state.",
        "# TYPE tailor_profiling_tasks gauge",
    ]
    lines += [f'tailor_profiling_tasks{{state="{state}"}} {count}' for state, count in tasks]
    online = sum(device_store.is_online(d, settings.offline_after_s) for d in devices)
    lines += [
        "# HELP tailor_devices_online Devices with a recent heartbeat.",
        "# TYPE tailor_devices_online gauge",
        f"tailor_devices_online {online}",
        "# HELP tailor_devices Enrolled devices.",
        "# TYPE tailor_devices gauge",
        f"tailor_devices {len(devices)}",
    ]
    return "\n".join(lines) + "\n"
