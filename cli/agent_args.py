"""`tailor agent`'s arguments, checked before anything is enrolled: each one no retry could fix
ends the command with one line and exit code 2 (a user error is no traceback)."""

from __future__ import annotations

import math
from pathlib import Path

from cli.support import fail

# The shortest --poll-interval. An idle agent polls once per interval (75-125 % of it,
# agent.POLL_JITTER), so 0 or less was a busy loop: hundreds of lease calls a second from one
# agent. 0.1 s bounds an idle agent to about 13 calls a second, a ceiling a server takes
# from a few agents, while the test drills' agents that poll every 0.2 s stay within it;
# a lab of phones wants the 2 s default, which a waiting task hardly notices.
MIN_POLL_S = 0.1


def cpus(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        fail(f"--cores: expected CPU numbers like 4,5,6,7, got {text!r}")


def exactly_one_device(host: bool, usb: str | None, tcp: str | None) -> None:
    """Exit 2 with one line unless exactly one of --host, --usb and --tcp is given."""
    chosen = [
        flag
        for flag, given in (
            ("--host", host),
            ("--usb", usb is not None),
            ("--tcp", tcp is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        fail(
            "choose exactly one of --host, --usb SERIAL, --tcp HOST:PORT"
            + (f" (got {' and '.join(chosen)}: they exclude each other)" if chosen else "")
        )


def check_server(server: str) -> None:
    """Exit 2 unless --server is an http(s) URL with a host: no retry fixes another."""
    import httpx

    try:
        url = httpx.URL(server)
    except httpx.InvalidURL as exc:
        fail(f"--server: {server!r} is no URL: {exc}")
    if url.scheme not in ("http", "https") or not url.host:
        fail(
            f"--server: expected an http:// or https:// URL such as http://10.0.0.5:8000, "
            f"got {server!r}"
        )
    if url.port is not None and not 1 <= url.port <= 65535:
        fail(f"--server: the port must be from 1 to 65535, got {url.port}")


def check_intervals(poll_interval: float, lease_seconds: float | None) -> None:
    """Exit 2 on a poll interval below MIN_POLL_S (or NaN, infinity), or a lease length the
    server's LeaseRequest refuses, before anything is enrolled."""
    from pydantic import ValidationError

    from core.protocol import MAX_LEASE_SECONDS, LeaseRequest

    if not (math.isfinite(poll_interval) and poll_interval >= MIN_POLL_S):
        fail(
            f"--poll-interval: must be a number of seconds, at least {MIN_POLL_S:g} (less "
            f"would flood the server with lease calls), got {poll_interval:g}"
        )
    if lease_seconds is not None:
        try:
            LeaseRequest(lease_seconds=lease_seconds)
        except ValidationError:
            fail(
                f"--lease-seconds: must be more than 0 and at most {MAX_LEASE_SECONDS:g} "
                f"seconds, got {lease_seconds:g}"
            )


def check_finite(options: dict[str, float | None]) -> None:
    """Exit 2 on NaN (an option without click's min= takes it) or an infinity (min= alone
    lets it through), or an --auth-timeout of no time; None is an option left out."""
    for flag, value in options.items():
        if value is not None and not math.isfinite(value):
            fail(f"{flag}: must be a finite number, got {value:g}")
    if options["--auth-timeout"] <= 0:
        fail(f"--auth-timeout: must be more than 0 seconds, got {options['--auth-timeout']:g}")


def _plain(flag: str, what: str, value: str) -> None:
    """Exit 2 if `value` holds control characters (NUL, an ANSI escape, a line break), as
    device_class_problem and device_name_problem refuse them: a typo is named, not cleaned."""
    if not value.isprintable():
        fail(f"{flag}: {what} {value!r} must not hold control characters")


def check_model(model: str) -> None:
    """Exit 2 unless --model is a device class a job spec can name (core's one rule for
    both ends, device_class_problem)."""
    from core.wire_text import device_class_problem, require

    try:
        require(device_class_problem(model), "device class", model)
    except ValueError as exc:
        fail(f"--model: {exc}")


def check_name(name: str, source: str) -> None:
    """Exit 2 unless `name` is a device name the server's EnrollRequest takes, printable
    and without surrounding spaces; `source`: where it came from, for the message."""
    from core.wire_text import device_name_problem, require

    try:
        require(device_name_problem(name), "device name", name)
    except ValueError as exc:
        fail(f"{source}: the {exc}")


def check_phone_address(tcp: str | None, usb: str | None) -> None:
    """Exit 2 on a --tcp that is no HOST:PORT, an empty --usb serial, or --usb on a
    machine without libusb. A well-formed host name that does not resolve is retried, not
    refused: a phone's name often resolves only once the network is up (an agent started
    at boot, a name from mDNS or DHCP), and the retries back off to one every 30 s."""
    if tcp is not None:
        from device_agent.adb_device import parse_tcp_address

        try:
            parse_tcp_address(tcp)
        except ValueError as exc:
            fail(f"--tcp: {exc}")
    if usb is not None:
        from device_agent.adb_device import UsbUnavailable, usb_transport_class

        if not usb.strip():
            fail("--usb: give the phone's USB serial (as `adb devices` lists it), not ''")
        _plain("--usb", "serial", usb)
        try:
            usb_transport_class()  # no libusb: no retry helps, unlike a phone not plugged in
        except UsbUnavailable as exc:
            fail(f"--usb: {exc}")


def check_arguments(
    *,
    host: bool,
    usb: str | None,
    tcp: str | None,
    server: str,
    poll_interval: float,
    lease_seconds: float | None,
    model: str,
    name: str | None,
    numbers: dict[str, float | None],
) -> None:
    """Every check above, in the order a user reads the options: which device, the server,
    the intervals, the other numbers, the class and name, the phone's address."""
    exactly_one_device(host=host, usb=usb, tcp=tcp)
    check_server(server)
    check_intervals(poll_interval, lease_seconds)
    check_finite(numbers)
    check_model(model)
    if name is not None:
        check_name(name, "--name")
    check_phone_address(tcp=tcp, usb=usb)


def usable_config_dir(config_dir: Path | None) -> Path:
    """The agent's config folder (--config-dir, else TAILOR_AGENT_HOME, else the default),
    made; exit 2 naming it when it is a file or cannot be written."""
    from device_agent.config import config_dir as resolve

    try:
        return resolve(config_dir)
    except OSError as exc:
        fail(
            f"--config-dir (or TAILOR_AGENT_HOME): cannot use {exc.filename or config_dir}: "
            f"{exc.strerror or exc}"
        )
