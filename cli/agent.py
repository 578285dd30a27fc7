"""`tailor agent`: plug a device in as a profiling agent (a phone over ADB, or this host)."""

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
    name: Optional[str] = typer.Option(None, help="a name for this device "
                                       "(default: host name, or the phone's serial)"),
    model: str = typer.Option("host", help="host backend: the device class it reports"),
    config_dir: Optional[Path] = typer.Option(None, envvar="TAILOR_AGENT_HOME",
                                              help="default ~/.config/tailor-agent"),
    poll_interval: float = typer.Option(2.0, help="seconds between lease attempts"),
    lease_seconds: Optional[float] = typer.Option(None, help="lease length to ask for "
                                                  "(default: the server's)"),
    runner: str = typer.Option("/data/local/tmp/onnxruntime_perf_test",
                               help="phone: path of onnxruntime_perf_test on the phone"),
    cores: Optional[str] = typer.Option(None, help="phone: CPUs to pin to, e.g. 4,5,6,7 "
                                        "(default: all but the slowest cluster)"),
    threads: Optional[int] = typer.Option(None, min=1, help="intra-op threads, overriding "
                                          "each task's spec"),
    auth_timeout: float = typer.Option(120.0, help="phone: seconds to wait for 'Allow' "
                                       "on the first connection"),
):
    """Enroll, then lease profiling tasks, measure them and report until stopped."""
    from device_agent.agent import Agent, host_measure
    from device_agent.client import ServerError
    from device_agent.config import adb_key_path
    from device_agent.config import config_dir as resolve_config

    if sum([host, usb is not None, tcp is not None]) != 1:
        typer.echo("error: choose exactly one of --host, --usb SERIAL, --tcp HOST:PORT",
                   err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    folder = resolve_config(config_dir)
    ready = None
    if host:
        from device_agent.properties import host_properties

        properties, measure = host_properties(model), host_measure
        name = name or socket.gethostname()
    else:
        from device_agent.adb_backend import AdbBackend, Reconnector
        from device_agent.adb_device import Phone, PhoneDisconnected
        from device_agent.properties import phone_properties

        phone = Phone(adb_key_path(folder), tcp=tcp, usb=usb, auth_timeout_s=auth_timeout)
        typer.echo(f"connecting to {phone.address}; accept 'Allow USB debugging' on the "
                   "phone if it asks")
        try:
            phone.connect()
        except PhoneDisconnected as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        properties = phone_properties(phone)
        backend = AdbBackend(phone, runner=runner,
                             cores=[int(c) for c in cores.split(",")] if cores else None)
        measure, ready = backend.measure, Reconnector(phone)
        name = name or properties.serial or (tcp or usb)
        typer.echo(f"phone: {properties.manufacturer} {properties.model}, "
                   f"Android {properties.android_release}, {properties.cpu_count} CPUs")
    if threads is not None:
        measure = _with_threads(measure, threads)
    worker = Agent(server, enroll_token, name, properties, measure, folder,
                   poll_s=poll_interval, lease_seconds=lease_seconds, ready=ready)
    worker.install_signal_handlers()
    try:
        worker.run()  # enrolls first; waits out a server that is not up yet, with back-off
    except ServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _with_threads(measure, threads: int):
    def measure_with(graph_dir, task):
        spec = task.spec.model_copy(update={"threads": threads})
        return measure(graph_dir, task.model_copy(update={"spec": spec}))

    return measure_with


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
