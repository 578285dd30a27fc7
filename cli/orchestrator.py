"""`tailor orchestrator`: claim queued jobs from the database and run them on Ray."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import typer


def orchestrator(
    database_url: Optional[str] = typer.Option(
        None, envvar="TAILOR_DATABASE_URL", help="default: SQLite in the data dir"
    ),
    data_dir: Path = typer.Option(Path("data"), envvar="TAILOR_DATA_DIR"),
    artifact_dir: Optional[Path] = typer.Option(None, envvar="TAILOR_ARTIFACT_DIR"),
    workers: Optional[int] = typer.Option(
        None, help="CPUs of a local Ray (ignored with RAY_ADDRESS)"
    ),
    once: bool = typer.Option(False, "--once", help="exit when no job is waiting"),
    poll_interval: float = typer.Option(2.0, help="seconds between looks for new jobs"),
    stale_after: float = typer.Option(60.0, help="reclaim running jobs silent this long"),
):
    """Run queued jobs: connects to RAY_ADDRESS, else starts a local Ray."""
    from core.states import JobStatus
    from orchestrator.driver import JobRunner
    from orchestrator.job_support import owner_id
    from orchestrator.ray_evaluator import connect
    from store import jobs as job_store
    from store.engine import make_engine, session_factory, upgrade
    from store.settings import StoreSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = StoreSettings(
        database_url=database_url, data_dir=data_dir, artifact_dir=artifact_dir
    )
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    sessions = session_factory(engine)
    connect(num_cpus=workers)
    owner = owner_id()
    typer.echo(f"orchestrator {owner} waiting for jobs", err=True)
    while True:
        job = job_store.claim_job(sessions, owner, stale_after_s=stale_after)
        if job is None:
            if once:
                return
            time.sleep(poll_interval)
            continue
        typer.echo(f"running job {job.id} ({job.name})", err=True)
        try:
            status = JobRunner(sessions, settings.resolved_artifact_dir(), job.id, owner).run()
        except Exception as exc:  # a job that cannot run is failed, the service goes on
            job_store.finish_job(sessions, job.id, JobStatus.FAILED, f"{type(exc).__name__}: {exc}")
            status = "failed"
        typer.echo(f"job {job.id} {status}", err=True)


def register(app: typer.Typer) -> None:
    app.command("orchestrator")(orchestrator)
