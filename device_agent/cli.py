"""`tailor agent`: plug a device in as a profiling agent."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Optional

import typer


def agent(
    server: str = typer.Option(..., help="API base URL, e.g. http://10.0.0.5:8000"),
    enroll_token: Optional[str] = typer.Option(None, envvar="TAILOR_ENROLL_TOKEN",
                                               help="needed the first time only"),
    host: bool = typer.Option(False, "--host", help="measure on this machine"),
    usb: Optional[str] = typer.Option(None, help="a phone's USB serial (ADB)"),
    tcp: Optional[str] = typer.Option(None, help="a phone's HOST:PORT (Wi-Fi ADB)"),
    name: str = typer.Option(socket.gethostname(), help="a name for this device"),
    model: str = typer.Option("host", help="host backend: the device class it reports"),
    config_dir: Optional[Path] = typer.Option(None, envvar="TAILOR_AGENT_HOME"),
    poll_interval: float = typer.Option(2.0, help="seconds between lease attempts"),
):
    """Enroll, then lease profiling tasks, measure them and report until stopped."""
    from .agent import Agent, host_measure
    from .client import ServerError
    from .config import config_dir as resolve_config
    from .properties import host_properties

    if sum([host, usb is not None, tcp is not None]) != 1:
        typer.echo("error: choose exactly one of --host, --usb SERIAL, --tcp HOST:PORT",
                   err=True)
        raise typer.Exit(2)
    if not host:
        typer.echo("error: the ADB backend (--usb/--tcp) is not in this release yet; "
                   "use --host", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    worker = Agent(server, enroll_token, name, host_properties(model), host_measure,
                   resolve_config(config_dir), poll_s=poll_interval)
    worker.install_signal_handlers()
    try:
        worker.ensure_enrolled()
        worker.run()
    except ServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
