"""`tailor serve`: run the API with uvicorn; flags fall back to TAILOR_* variables."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port"),
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
):
    """Serve the REST API (and, later, the dashboard)."""
    import uvicorn

    from api.app import create_app, freeze_startup_objects
    from api.guards import SERVER_OPTIONS
    from api.settings import Settings

    settings = Settings(
        database_url=database_url,
        admin_key=admin_key,
        enroll_token=enroll_token,
        artifact_dir=artifact_dir,
        data_dir=data_dir,
    )
    try:
        app = create_app(settings)
    except Exception as exc:  # a CLI boundary: one line, no stack trace
        typer.echo(
            f"error: cannot start: {type(exc).__name__}: {str(exc).splitlines()[0]}", err=True
        )
        raise typer.Exit(2) from None
    freeze_startup_objects()
    uvicorn.run(app, host=host, port=port, log_level="info", **SERVER_OPTIONS)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
