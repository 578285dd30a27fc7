"""A phone over ADB, driven by adb-shell directly (no adb server on the host).

- The host's RSA key is created once and kept in the agent's config directory (`adbkey`,
  `adbkey.pub`), so the phone asks "Allow USB debugging?" only the first time; that first
  connection waits `auth_timeout_s` (default 120 s) for the tap.
- `push_verified` pushes files under /data/local/tmp, skipping those whose sha256 on the
  phone already matches, and checks every pushed file's sha256 on the phone afterwards.
- Every transport failure (cable pulled, Wi-Fi dropped, adbd restarted) surfaces as
  `PhoneDisconnected`; `connect()` again once the phone is back.
- Every ADB operation is bounded: a read that gets nothing for `adb_timeout_s` (a phone
  that silently left the network keeps the socket open) is a disconnect, and each
  command has an overall limit too.
- An unknown key logs the fingerprint the phone shows ("tap Allow on the phone (RSA
  fingerprint …)") and a progress line every PAIRING_LOG_EVERY_S while it waits.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
import shlex
import socket
import threading
import time
from pathlib import Path, PurePosixPath

from adb_shell import exceptions as adb_errors
from adb_shell.adb_device import AdbDevice
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from adb_shell.transport.tcp_transport import TcpTransport

from .defaults import ADB_TIMEOUT_S, AUTH_TIMEOUT_S
from .failures import DeviceError, PhoneDisconnected

log = logging.getLogger("tailor.agent.adb")
PAIRING_LOG_EVERY_S = 15.0
ADB_ERRORS = (
    adb_errors.AdbConnectionError,
    adb_errors.AdbTimeoutError,
    adb_errors.InvalidResponseError,
    adb_errors.InvalidCommandError,
    adb_errors.TcpTimeoutException,
    adb_errors.UsbReadFailedError,
    adb_errors.UsbWriteFailedError,
    adb_errors.DeviceAuthError,
    adb_errors.InvalidChecksumError,
    OSError,
    ConnectionError,
)


# What adb-shell raises when the wait for "Allow" runs out (TCP or USB).
PAIRING_WAIT_OVER = (
    adb_errors.TcpTimeoutException,
    adb_errors.AdbTimeoutError,
    adb_errors.UsbReadFailedError,
)


class PairingTimeout(PhoneDisconnected):
    """Nobody tapped Allow on the phone in time; connecting again shows the dialog again."""


class UsbUnavailable(PhoneDisconnected):
    """This machine cannot speak USB at all (no libusb1 package, or no libusb-1.0 library):
    no retry fixes that, so `tailor agent --usb` checks for it before anything else and
    stops with this message (what to install). Met later (a library removed under a running
    agent), it is a failure to connect like any other, which the reconnect path retries."""


def usb_transport_class():
    """adb-shell's USB transport; UsbUnavailable where libusb1 (an optional extra of
    adb-shell) or the libusb-1.0 library it loads on import is missing."""
    try:
        from adb_shell.transport.usb_transport import UsbTransport
    except ImportError as exc:
        raise UsbUnavailable(
            "USB needs `pip install adb-shell[usb]` (libusb1); or enable Wi-Fi ADB and use --tcp"
        ) from exc
    except OSError as exc:  # usb1 loads libusb-1.0 when imported
        raise UsbUnavailable(
            "USB needs the libusb-1.0 library (e.g. `apt install libusb-1.0-0`, "
            "`brew install libusb`); or enable Wi-Fi ADB and use --tcp"
        ) from exc
    return UsbTransport


ADB_TCP_PORT = 5555  # adbd's port where HOST:PORT gives none
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


def parse_tcp_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `HOST` (port 5555) -> (host, port). HOST is a host name, an IPv4
    address or an IPv6 one in brackets (`[fe80::1]:5555`). ValueError says what is wrong
    with the text's form; whether the name resolves is another matter (a network that is
    not up yet), left to connecting."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        port = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is no IPv6 address") from None
    else:
        host, colon, port = text.rpartition(":") if ":" in text else (text, "", None)
        if ":" in host:
            raise ValueError(f"an IPv6 address goes in brackets, e.g. [fe80::1]:5555, got {text!r}")
        if not host:
            raise ValueError(f"expected HOST:PORT, e.g. 192.168.1.20:5555, got {text!r}")
        if len(host) > 253 or not _HOST_NAME.fullmatch(host):
            raise ValueError(f"{host[:60]!r} is no host name or IP address")
    if port is None:
        return host, ADB_TCP_PORT
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"the port must be a number from 1 to 65535, got {port!r}")
    return host, int(port)


class PhoneCommandError(RuntimeError):
    """A command on the phone failed; the message carries its output."""


class PhoneCommandTimeout(PhoneCommandError):
    """A command kept the phone talking past its overall limit (a graph too slow to
    measure): the phone answered all along, so it is no disconnect."""


def key_fingerprint(public_key: str) -> str:
    """The fingerprint Android shows in "Allow USB debugging?": MD5 of the key blob,
    colon-separated uppercase hex."""
    digest = hashlib.md5(base64.b64decode(public_key.split()[0])).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class _TcpTransport(TcpTransport):
    """adb-shell's TCP transport, except that a closed socket is an error at once (the
    stock one returns b'' and the reader spins until its read timeout)."""

    def bulk_read(self, numbytes, transport_timeout_s):
        data = super().bulk_read(numbytes, transport_timeout_s)
        if not data:
            raise ConnectionResetError("the phone closed the ADB connection")
        return data


def load_signer(key_path: Path) -> PythonRSASigner:
    """The host's ADB key, created on first use (private key mode 0600)."""
    if not key_path.exists():
        key_path.parent.mkdir(parents=True, exist_ok=True)
        keygen(str(key_path))
        key_path.chmod(0o600)
        log.info("created ADB key %s", key_path)
    return PythonRSASigner.FromRSAKeyPath(str(key_path))


class Phone:
    """One phone: `Phone(key_path, tcp="192.168.1.20:5555")` or `Phone(key_path, usb=SERIAL)`."""

    def __init__(
        self,
        key_path: Path,
        tcp: str | None = None,
        usb: str | None = None,
        auth_timeout_s: float = AUTH_TIMEOUT_S,
        transport_timeout_s: float = ADB_TIMEOUT_S,
        pairing_log_every_s: float = PAIRING_LOG_EVERY_S,
    ):
        if (tcp is None) == (usb is None):
            raise ValueError("give exactly one of tcp='HOST:PORT' or usb='SERIAL'")
        if tcp is not None:
            parse_tcp_address(tcp)  # ValueError now, not at the first connect
        self.key_path, self.tcp, self.usb = key_path, tcp, usb
        self.auth_timeout_s, self.transport_timeout_s = auth_timeout_s, transport_timeout_s
        self.pairing_log_every_s = pairing_log_every_s
        self.device: AdbDevice | None = None
        self.lock = threading.RLock()  # one ADB operation at a time

    @property
    def address(self) -> str:
        return f"tcp:{self.tcp}" if self.tcp else f"usb:{self.usb}"

    def _transport(self):
        if self.tcp:
            return _TcpTransport(*parse_tcp_address(self.tcp))
        return usb_transport_class().find_adb(serial=self.usb)

    def connect(self) -> None:
        self.close()
        signer = load_signer(self.key_path)
        asked = threading.Event()
        done = threading.Event()

        def on_auth(_device):  # adb-shell calls this just before it sends our public key
            log.info(
                "%s does not know this computer's key yet: tap Allow on the phone "
                "(RSA fingerprint %s); waiting up to %.0f s",
                self.address,
                key_fingerprint(signer.GetPublicKey()),
                self.auth_timeout_s,
            )
            asked.set()
            threading.Thread(target=self._pairing_progress, args=(done,), daemon=True).start()

        try:
            device = AdbDevice(
                self._transport(),
                default_transport_timeout_s=self.transport_timeout_s,
                banner=socket.gethostname(),
            )
            device.connect(
                rsa_keys=[signer],
                auth_timeout_s=self.auth_timeout_s,
                transport_timeout_s=self.transport_timeout_s,
                read_timeout_s=self.transport_timeout_s,
                auth_callback=on_auth,
            )
        except ADB_ERRORS as exc:
            if asked.is_set() and isinstance(exc, PAIRING_WAIT_OVER):
                raise PairingTimeout(
                    f"{self.address}: nobody tapped Allow on the phone within "
                    f"{self.auth_timeout_s:.0f} s"
                ) from exc
            raise PhoneDisconnected(
                f"{self.address}: cannot connect ({type(exc).__name__}: {exc})"
            ) from exc
        finally:
            done.set()
        self.device = device
        log.info("connected to %s%s", self.address, " (key allowed)" if asked.is_set() else "")

    def _pairing_progress(self, done: threading.Event) -> None:
        started = time.monotonic()
        while not done.wait(self.pairing_log_every_s):
            log.info(
                "still waiting for Allow on the phone (%s): %.0f s of %.0f s",
                self.address,
                time.monotonic() - started,
                self.auth_timeout_s,
            )

    def close(self) -> None:
        if self.device is not None:
            try:
                self.device.close()
            except ADB_ERRORS:
                pass
            self.device = None

    @property
    def connected(self) -> bool:
        return self.device is not None and self.device.available

    def _need(self) -> AdbDevice:
        if not self.connected:
            raise PhoneDisconnected(f"{self.address}: not connected")
        return self.device

    def _guard(self, what: str, call):
        try:
            return call()
        except ADB_ERRORS as exc:
            self.close()
            raise PhoneDisconnected(
                f"{self.address}: lost during {what} ({type(exc).__name__}: {exc})"
            ) from exc

    def shell(self, command: str, timeout_s: float = 60.0) -> str:
        """Run a command; silence for `transport_timeout_s` or a run past `timeout_s`
        counts as the phone gone (PhoneDisconnected)."""
        with self.lock:
            device = self._need()
            started = time.monotonic()
            try:
                return self._guard(
                    f"`{command[:60]}`",
                    lambda: device.shell(
                        command,
                        transport_timeout_s=min(self.transport_timeout_s, timeout_s),
                        read_timeout_s=timeout_s,
                        timeout_s=timeout_s,
                    ),
                )
            except PhoneDisconnected as exc:
                if time.monotonic() - started < timeout_s or not isinstance(
                    exc.__cause__, adb_errors.AdbTimeoutError
                ):
                    raise
                raise PhoneCommandTimeout(
                    f"`{command[:200]}` was still running after {timeout_s:.0f} s"
                ) from exc

    def checked(self, command: str, timeout_s: float = 60.0) -> str:
        """Run a command; raise PhoneCommandError with its output if it exits non-zero."""
        out = self.shell(f'({command}); echo "@@rc=$?"', timeout_s)
        body, _, rc = out.rstrip().rpartition("@@rc=")
        if not body and "@@rc=" not in out:
            rc = "without a status"
        if rc.strip() != "0":
            raise PhoneCommandError(
                f"`{command[:200]}` exited {rc.strip()}: {body.strip()[-1500:]}"
            )
        return body

    def sha256(self, paths: list[str]) -> dict[str, str]:
        """sha256 of files on the phone (missing files are absent from the result)."""
        if not paths:
            return {}
        out = self.shell(
            "sha256sum " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null", timeout_s=120
        )
        found = {}
        for line in out.splitlines():
            digest, _, name = line.strip().partition(" ")
            if len(digest) == 64:
                found[name.strip().lstrip("*")] = digest
        return found

    def push_verified(self, files: dict[Path, str], timeout_s: float = 300.0) -> list[str]:
        """Push local files to device paths unless already there with the same sha256;
        returns the device paths pushed. Raises PhoneCommandError on a checksum mismatch."""
        wanted = {
            remote: hashlib.sha256(local.read_bytes()).hexdigest()
            for local, remote in files.items()
        }
        present = self.sha256(list(wanted))
        todo = {
            local: remote
            for local, remote in files.items()
            if present.get(remote) != wanted[remote]
        }
        if todo:
            folders = sorted({str(PurePosixPath(r).parent) for r in todo.values()})
            self.checked("mkdir -p " + " ".join(shlex.quote(f) for f in folders))
            for local, remote in todo.items():
                self._push(local, remote, timeout_s)
            after = self.sha256(list(todo.values()))
            bad = [r for r in todo.values() if after.get(r) != wanted[r]]
            if bad:
                raise PhoneCommandError(f"sha256 mismatch on the phone after push: {bad}")
        return list(todo.values())

    def _push(self, local: Path, remote: str, timeout_s: float) -> None:
        with self.lock:
            device = self._need()
            try:
                self._guard(
                    f"push {remote}",
                    lambda: device.push(
                        str(local),
                        remote,
                        transport_timeout_s=self.transport_timeout_s,
                        read_timeout_s=timeout_s,
                    ),
                )
            except adb_errors.PushFailedError as exc:
                raise DeviceError(
                    f"the phone refused {remote} ({exc}): free some storage "
                    f"on the phone (adb shell df -h /data/local/tmp)"
                ) from exc
