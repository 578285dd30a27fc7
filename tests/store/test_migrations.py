"""Migrations applied to a database that already holds data, on both backends."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from store import tasks
from store.engine import MIGRATIONS, make_engine, session_factory
from store.task_results import task_results


def migrate(engine, revision: str, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_0007_keeps_old_tasks_as_float_and_allows_one_task_per_variant(database_url):
    engine = make_engine(database_url)
    migrate(engine, "0006")
    with engine.begin() as c:  # a job, a candidate and a task as 0006 stored them
        c.execute(
            text(
                "INSERT INTO jobs (name, spec, status, generations_done, "
                "evaluations_done, cancel_requested, created_at) VALUES "
                "('old', '{}', 'running', 0, 0, false, CURRENT_TIMESTAMP)"
            )
        )
        job_id = c.execute(text("SELECT id FROM jobs")).scalar()
        c.execute(
            text(
                "INSERT INTO candidates (job_id, genome_hash, genome, generation, "
                "parents, origin, status, metrics, predictions, created_at, updated_at) "
                "VALUES (:j, 'abababababababab', '{}', 0, '[]', 'random', 'pending', "
                "'{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"j": job_id},
        )
        candidate = c.execute(text("SELECT id FROM candidates")).scalar()
        c.execute(
            text(
                "INSERT INTO profiling_tasks (job_id, candidate_id, device_class, spec, "
                "state, attempts, max_attempts, priority, created_at, updated_at) VALUES "
                "(:j, :c, 'phone', '{}', 'queued', 0, 3, 0, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            ),
            {"j": job_id, "c": candidate},
        )
    sessions = session_factory(engine)
    migrate(engine, "head")
    first = tasks.enqueue_task(sessions, job_id, candidate, "phone", {})  # the old row
    assert first.variant == ""
    again = tasks.enqueue_task(sessions, job_id, candidate, "phone", {})
    int8 = tasks.enqueue_task(sessions, job_id, candidate, "phone", {}, variant="int8")
    assert again.id == first.id and int8.id != first.id and int8.variant == "int8"
    assert {r["variant"] for r in task_results(sessions, [candidate])} == {"", "int8"}
    # and back: the downgrade keeps the float task (the int8 one would break the old
    # unique constraint, so it is removed first, as an operator rolling back would)
    with engine.begin() as c:
        c.execute(text("DELETE FROM profiling_tasks WHERE variant <> ''"))
    migrate(engine, "0006", down=True)
    with engine.begin() as c:
        assert c.execute(text("SELECT COUNT(*) FROM profiling_tasks")).scalar() == 1
    engine.dispose()


def test_0008_indexes_the_poll_count_and_drops_it_on_the_way_down(database_url):
    """Every dashboard poll counts a job's candidates by generation and status: 0008 adds the
    index that answers it; SQLite's planner must use it (no row reads)."""
    from sqlalchemy import inspect

    from store.polling import _POLL_VERSION

    def names():
        return {ix["name"] for ix in inspect(engine).get_indexes("candidates")}

    engine = make_engine(database_url)
    migrate(engine, "0007")
    assert "ix_candidates_job_generation_status" not in names()
    migrate(engine, "head")
    assert "ix_candidates_job_generation_status" in names()
    if engine.dialect.name == "sqlite":
        statement = str(
            _POLL_VERSION.params(job_id=1, since=0).compile(
                dialect=engine.dialect, compile_kwargs={"literal_binds": True}
            )
        )
        with engine.connect() as c:
            plan = " ".join(r[-1] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement))
        assert "COVERING INDEX ix_candidates_job_generation_status" in plan, plan
    migrate(engine, "0007", down=True)
    assert "ix_candidates_job_generation_status" not in names()
    engine.dispose()


def test_0009_adds_device_readiness_keeping_old_devices_and_drops_it_on_the_way_down(database_url):
    """A device enrolled before 0009 has no verdict (NULL): it stays ready as before; a
    verdict stored after the upgrade is read back as the agent sent it."""
    from sqlalchemy import inspect

    from store import devices

    def columns():
        return {c["name"] for c in inspect(engine).get_columns("devices")}

    engine = make_engine(database_url)
    migrate(engine, "0008")
    assert "readiness" not in columns()
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO devices (name, model, properties, token_hash, state, "
                "last_heartbeat_at, created_at) VALUES ('old', 'Pixel 8', '{}', "
                "'h', 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    migrate(engine, "head")
    sessions = session_factory(engine)
    [device] = devices.list_devices(sessions)
    assert device.readiness is None and devices.readiness(device, 60).ready
    verdict = {"ready": False, "reason": "runner missing", "fix": "push it"}
    device = devices.heartbeat_device(sessions, device.id, readiness=verdict)
    assert devices.list_devices(sessions)[0].readiness == verdict
    assert devices.readiness(device, 60) == devices.Readiness(False, "runner missing", "push it")
    migrate(engine, "0008", down=True)
    assert "readiness" not in columns()
    engine.dispose()
