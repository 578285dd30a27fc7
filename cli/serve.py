"""`tailor serve`: run the API with uvicorn; flags fall back to TAILOR_* variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from cli.support import fail
from core.strict import error_message


def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, min=0, max=65535, help="port (0: any free one)"),
    database_url: Optional[str] = typer.Option(
        None, envvar="TAILOR_DATABASE_URL", help="default: SQLite in the data dir"
    ),
    admin_key: Optional[str] = typer.Option(
        None, envvar="TAILOR_ADMIN_KEY", help="admin Bearer key (else generated)"
    ),
    enroll_token: Optional[str] = typer.Option(
        None, envvar="TAILOR_ENROLL_TOKEN", help="token phones enroll with"
    ),
    artifact_dir: Optional[Path] = typer.Option(None, envvar="TAILOR_ARTIFACT_DIR"),
    data_dir: Path = typer.Option(Path("data"), envvar="TAILOR_DATA_DIR"),
    workers: int = typer.Option(
        1,
        envvar="TAILOR_WORKERS",
        min=1,
        max=64,
        help="server processes (PostgreSQL only): a lab's bursts of lease calls are Python "
        "work, and one process does it under one interpreter lock",
    ),
):
    """Serve the REST API and the dashboard."""
    import uvicorn
    from pydantic import ValidationError

    from api.app import create_app, freeze_startup_objects
    from api.guards import SERVER_OPTIONS
    from api.settings import Settings

    given = {
        "database_url": database_url,
        "admin_key": admin_key,
        "enroll_token": enroll_token,
        "artifact_dir": artifact_dir,
        "data_dir": data_dir,
    }
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        fail(setting_error(exc, Settings.model_config["env_prefix"]))
    if workers > 1 and settings.uses_sqlite():
        typer.echo(
            f"error: --workers {workers} needs PostgreSQL (--database-url): SQLite takes one "
            "writer at a time, and its writers queue in order only within one process",
            err=True,
        )
        raise typer.Exit(2)
    try:
        # migrates the schema, once, before any worker starts; the workers give the leases
        # their length again as each starts serving (api.app.worker_app)
        app = create_app(settings, starting=workers == 1)
    except Exception as exc:  # a CLI boundary: one line, no stack trace
        typer.echo(
            f"error: cannot start: {type(exc).__name__}: {str(exc).splitlines()[0]}", err=True
        )
        raise typer.Exit(2) from None
    if workers == 1:
        freeze_startup_objects()
        uvicorn.run(app, host=host, port=port, log_level="info", **SERVER_OPTIONS)
        return
    app.state.engine.dispose()  # this process only supervises the workers from here on
    # Each worker builds its app from the environment: the same settings as this one's.
    for name, value in given.items():
        if value is not None:
            os.environ[f"TAILOR_{name.upper()}"] = str(value)
    uvicorn.run(
        "api.app:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        **SERVER_OPTIONS,
    )


def setting_error(exc, env_prefix: str) -> str:
    """A settings ValidationError as one line naming the setting and its environment
    variable (flags such as --data-dir read the same variables)."""
    first = exc.errors()[0]
    message = error_message(first)
    if not first["loc"]:  # a check across settings: its message names them
        return f"bad settings: {message}"
    name = str(first["loc"][0])
    return f"setting {name} ({env_prefix}{name.upper()}): {message}"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
