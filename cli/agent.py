"""`tailor agent`: plug a device in as a profiling agent (a phone over ADB, or this host).

Its help is click's plain layout (the rich one renders flags as `--host <bool>` and cuts
long defaults such as the runner's path). User errors end in one line and exit 2, never a
traceback.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand

from cli.agent_args import (
    MIN_POLL_S,
    check_arguments,
    check_name,
    cpus,
    usable_config_dir,
)
from cli.support import fail
from device_agent.defaults import (
    ADB_TIMEOUT_S,
    ALIVE_EVERY_S,
    AUTH_TIMEOUT_S,
    DEFAULT_RUNNER,
    MIN_FREE_MB,
    WORK_ROOT,
)

log = logging.getLogger("tailor.agent")
DEVICE = "Device (exactly one; --host, --usb and --tcp exclude each other)"
PHONE = "Phone (--usb or --tcp)"
RECONNECT_BACKOFF_S = (1.0, 30.0)


class PlainHelp(TyperCommand):
    """Click's own help layout for this command: flags without a `<bool>` metavar, and
    defaults wrapped, never cut."""

    def format_help(self, ctx, formatter):
        super(TyperCommand, self).format_help(ctx, formatter)


def agent(
    server: str = typer.Option(..., metavar="URL", help="API base URL, e.g. http://10.0.0.5:8000"),
    enroll_token: Optional[str] = typer.Option(
        None,
        envvar="TAILOR_ENROLL_TOKEN",
        metavar="TOKEN",
        help="needed the first time only (and to update the device's properties)",
    ),
    host: bool = typer.Option(
        False,
        "--host",
        help="measure on this machine (excludes --usb and --tcp)",
        rich_help_panel=DEVICE,
    ),
    usb: Optional[str] = typer.Option(
        None,
        metavar="SERIAL",
        help="a phone's USB serial (excludes --host and --tcp)",
        rich_help_panel=DEVICE,
    ),
    tcp: Optional[str] = typer.Option(
        None,
        metavar="HOST:PORT",
        help="a phone over Wi-Fi ADB (excludes --host and --usb)",
        rich_help_panel=DEVICE,
    ),
    name: Optional[str] = typer.Option(
        None,
        metavar="NAME",
        help="a name for this device (default: host name, or the phone's serial)",
    ),
    model: str = typer.Option(
        "host", metavar="CLASS", help="host backend: the device class it reports"
    ),
    config_dir: Optional[Path] = typer.Option(
        None, envvar="TAILOR_AGENT_HOME", metavar="DIR", help="default ~/.config/tailor-agent"
    ),
    poll_interval: float = typer.Option(
        2.0, metavar="S", help=f"seconds between lease attempts (at least {MIN_POLL_S:g})"
    ),
    lease_seconds: Optional[float] = typer.Option(
        None, metavar="S", help="lease length to ask for (default: the server's)"
    ),
    threads: Optional[int] = typer.Option(
        None, min=1, metavar="N", help="intra-op threads, overriding each task's spec"
    ),
    runner: str = typer.Option(
        DEFAULT_RUNNER,
        metavar="PATH",
        show_default=False,
        help=f"path of onnxruntime_perf_test on the phone; default {DEFAULT_RUNNER}",
        rich_help_panel=PHONE,
    ),
    cores: Optional[str] = typer.Option(
        None,
        metavar="LIST",
        help="CPUs to pin to, e.g. 4,5,6,7 (default: all but the slowest cluster)",
        rich_help_panel=PHONE,
    ),
    auth_timeout: float = typer.Option(
        AUTH_TIMEOUT_S,
        metavar="S",
        help="seconds one wait for 'Allow' on the phone lasts (the agent then asks again)",
        rich_help_panel=PHONE,
    ),
    adb_timeout: float = typer.Option(
        ADB_TIMEOUT_S,
        min=ALIVE_EVERY_S + 1,
        metavar="S",
        help="seconds of silence on the ADB link before the phone counts as gone",
        rich_help_panel=PHONE,
    ),
    cooldown_celsius: Optional[float] = typer.Option(
        None,
        min=0,
        max=150,
        metavar="C",
        help="cool-down limit; the stricter of it and the job's applies",
        rich_help_panel=PHONE,
    ),
    thermal_zones: Optional[str] = typer.Option(
        None,
        metavar="LIST",
        help="zones to watch, e.g. cpu,battery (substrings of the zone type); replace the job's",
        rich_help_panel=PHONE,
    ),
    cooldown_timeout: Optional[float] = typer.Option(
        None,
        min=0,
        metavar="S",
        help="longest cool-down wait, replacing the job's",
        rich_help_panel=PHONE,
    ),
    min_free_mb: float = typer.Option(
        MIN_FREE_MB,
        min=0,
        metavar="MB",
        help=f"free storage the phone needs in {WORK_ROOT}",
        rich_help_panel=PHONE,
    ),
):
    """Enroll, then lease profiling tasks, measure them and report until stopped.

    Measure a phone (--usb SERIAL or --tcp HOST:PORT) or this machine (--host): give
    exactly one; --host, --usb and --tcp exclude each other.
    """
    from device_agent.agent import Agent, EnrollmentRefused
    from device_agent.client import ServerError

    check_arguments(
        host=host,
        usb=usb,
        tcp=tcp,
        server=server,
        poll_interval=poll_interval,
        lease_seconds=lease_seconds,
        model=model,
        name=name,
        numbers={
            "--auth-timeout": auth_timeout,
            "--adb-timeout": adb_timeout,
            "--cooldown-celsius": cooldown_celsius,
            "--cooldown-timeout": cooldown_timeout,
            "--min-free-mb": min_free_mb,
        },
    )
    pinned = cpus(cores)
    folder = usable_config_dir(config_dir)
    _quiet_logging()
    if host:
        name, properties, measure, ready = _host_device(name, model)
    else:
        name, properties, measure, ready = _phone_device(
            name,
            folder,
            tcp=tcp,
            usb=usb,
            runner=runner,
            cores=pinned,
            auth_timeout=auth_timeout,
            adb_timeout=adb_timeout,
            cooldown_celsius=cooldown_celsius,
            thermal_zones=thermal_zones,
            cooldown_timeout=cooldown_timeout,
            min_free_mb=min_free_mb,
        )
    if threads is not None:
        measure = _with_threads(measure, threads)
    worker = Agent(
        server,
        enroll_token,
        name,
        properties,
        measure,
        folder,
        poll_s=poll_interval,
        lease_seconds=lease_seconds,
        ready=ready,
    )
    worker.install_signal_handlers()
    try:
        worker.run()  # enrolls first; waits out a server that is not up yet, with back-off
    except (EnrollmentRefused, ServerError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _quiet_logging() -> None:
    """The agent's own lines at INFO, without a line per HTTP poll."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per poll
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _host_device(name: str | None, model: str):
    """This machine as the device: (name, properties, measure, ready), with nothing to wait
    for before a lease."""
    from device_agent.agent import host_measure
    from device_agent.properties import host_properties

    if name is None:
        name = socket.gethostname()
        check_name(name, "--name (default: the host name)")
    return name, host_properties(model), host_measure, None


def _phone_device(
    name: str | None,
    folder: Path,
    *,
    tcp: str | None,
    usb: str | None,
    runner: str,
    cores: list[int] | None,
    auth_timeout: float,
    adb_timeout: float,
    cooldown_celsius: float | None,
    thermal_zones: str | None,
    cooldown_timeout: float | None,
    min_free_mb: float,
):
    """A phone over ADB as the device: (name, properties, measure, ready), `ready` being the
    reconnector that checks the phone before each lease."""
    from device_agent import thermal
    from device_agent.adb_backend import AdbBackend, Reconnector
    from device_agent.preflight import Preflight

    zones = tuple(z.strip() for z in (thermal_zones or "").split(",") if z.strip())
    phone, properties = _open_phone(folder, tcp, usb, auth_timeout, adb_timeout)
    backend = AdbBackend(
        phone,
        runner=runner,
        cores=cores,
        cooling=thermal.CoolingPolicy(
            limit_celsius=cooldown_celsius, zones=zones, timeout_s=cooldown_timeout
        ),
    )
    properties = properties.model_copy(update={"thermal_zones": backend.watched_zones()})
    ready = Reconnector(phone, preflight=Preflight(phone, runner, WORK_ROOT, min_free_mb))
    if name is None:
        name = properties.serial or (tcp or usb)
        check_name(name, "--name (default: the phone's serial)")
    return name, properties, backend.measure, ready


def _open_phone(
    folder: Path, tcp: str | None, usb: str | None, auth_timeout: float, adb_timeout: float
):
    """Lock the phone, connect (asking for Allow as often as it takes) and read its
    properties; exits 2 with one line if another agent holds the phone."""
    from device_agent.adb_device import PairingTimeout, Phone, PhoneDisconnected
    from device_agent.config import adb_key_path
    from device_agent.phone_lock import PhoneBusy, PhoneLock
    from device_agent.properties import phone_properties

    locks = []
    try:
        locks.append(PhoneLock(tcp or usb).acquire())
        phone = Phone(
            adb_key_path(folder),
            tcp=tcp,
            usb=usb,
            auth_timeout_s=auth_timeout,
            transport_timeout_s=adb_timeout,
        )
        log.info("connecting to %s", phone.address)
        backoff = RECONNECT_BACKOFF_S[0]
        while True:
            try:
                phone.connect()
                properties = phone_properties(phone)
                break
            except PairingTimeout as exc:
                log.warning("%s; asking again", exc)
            except PhoneDisconnected as exc:
                log.warning("phone not reachable (%s); next try in %.0f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_S[1])
        if properties.serial and properties.serial != (tcp or usb):
            locks.append(PhoneLock(properties.serial).acquire())
    except PhoneBusy as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("stopped before the phone was connected", err=True)
        raise typer.Exit(130) from None
    log.info(
        "phone: %s %s, Android %s, %s, %s CPUs",
        properties.manufacturer,
        properties.model,
        properties.android_release,
        properties.abi or "unknown ABI",
        properties.cpu_count,
    )
    phone.locks = locks  # held for the agent's life
    return phone, properties


def _with_threads(measure, threads: int):
    def measure_with(graph_dir, task):
        spec = task.spec.model_copy(update={"threads": threads})
        return measure(graph_dir, task.model_copy(update={"spec": spec}))

    return measure_with


def register(app: typer.Typer) -> None:
    app.command("agent", cls=PlainHelp)(agent)
