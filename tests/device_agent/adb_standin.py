"""A loopback Android phone for tests: a TCP server that speaks the real ADB wire protocol.

What it implements, as adbd does over Wi-Fi ADB:
- 24-byte message headers (command, arg0, arg1, length, byte-sum checksum, magic) with the
  checksum and magic checked on every packet it receives;
- CNXN, then AUTH: a random 20-byte token, the host's SHA-1/PKCS#1 v1.5 signature checked
  against the authorized public keys; an unknown key arrives as AUTH RSAPUBLICKEY (Android's
  RSAPublicKey struct in base64), and the user "taps Allow" after `allow_delay_s` (or never,
  with `allow_new_keys=False`);
- OPEN/OKAY/WRTE/CLSE streams with one-packet flow control;
- `shell:CMD`: runs `sh -c CMD` in a sandbox where `/data/local/tmp`, `/sys/` and `/proc/`
  map into the sandbox (a fake 8-core big.LITTLE phone), output streamed back;
- `sync:`: STAT, SEND/DATA/DONE, RECV, QUIT.
`unplug()` drops every connection and stops listening (the cable pulled); `replug()` listens
again on the same port.

Faults a real phone shows: `freeze()` (the phone left the Wi-Fi: it stops answering, every
socket stays open, new connections get no answer) and `thaw()`; `set_zone(i, celsius)` (a
hot phone); `remove_runner()`; `set_free_storage(kb)` (what `df` reports); `disk_full`
(pushes fail as adbd's "No space left on device"); `allow_new_keys=False` (nobody taps
Allow); `set_runner_line(line)`; `take_cpu_offline(i)`; a slow runner, a runner killed
mid-line, a build without a provider (standin_perf_test.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat as stat_mod
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (
    int.from_bytes(c, "little") for c in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE")
)
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
VERSION, MAXDATA = 0x01000000, 256 * 1024
SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")
HERE = Path(__file__).resolve().parent

CPU_MAX_FREQ_KHZ = [1950000] * 4 + [2600000] * 3 + [3390000]  # 4 little, 3 big, 1 prime
THERMAL_ZONES = [("cpu-1-0-0", 38500), ("battery", 31000), ("pm8550-pmic", 47000)]
GETPROP = {
    "ro.product.model": "SM-S928B",
    "ro.product.manufacturer": "samsung",
    "ro.soc.model": "SM8650",
    "ro.board.platform": "pineapple",
    "ro.product.board": "pineapple",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.serialno": "R5CX00STANDIN",
}


def parse_android_pubkey(blob: bytes) -> tuple[int, int]:
    """(n, e) from adb's public key format: base64(RSAPublicKey struct) + ' user@host'."""
    raw = base64.b64decode(blob.strip(b"\0").split()[0])
    words = struct.unpack_from("<I", raw, 0)[0]
    n = int.from_bytes(raw[8 : 8 + 4 * words], "little")
    e = struct.unpack_from("<I", raw, 8 + 8 * words)[0]
    return n, e


def signature_valid(token: bytes, signature: bytes, key: tuple[int, int]) -> bool:
    n, e = key
    size = (n.bit_length() + 7) // 8
    if len(signature) != size:
        return False
    em = pow(int.from_bytes(signature, "big"), e, n).to_bytes(size, "big")
    digest = SHA1_DIGEST_INFO + token
    expected = b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest
    return em == expected


def make_sandbox(
    root: Path, runner_line: str = "main", props: dict[str, str] | None = None
) -> Path:
    """The phone's file system: /data/local/tmp with the stand-in runner of `runner_line`
    (standin_texts.LINES), /sys, /proc, bin. `props` replaces getprop values (another
    model, serial: one phone of a fleet)."""
    getprop = {**GETPROP, **(props or {})}
    (root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
    for cpu, khz in enumerate(CPU_MAX_FREQ_KHZ):
        freq = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        freq.mkdir(parents=True, exist_ok=True)
        (freq / "cpuinfo_max_freq").write_text(f"{khz}\n")
    for zone, (kind, milli) in enumerate(THERMAL_ZONES):
        z = root / f"sys/class/thermal/thermal_zone{zone}"
        z.mkdir(parents=True, exist_ok=True)
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(f"{milli}\n")
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/cpuinfo").write_text(
        "".join(
            f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd\nCPU part\t: 0xd46\n\n"
            for i in range(len(CPU_MAX_FREQ_KHZ))
        )
        + "Hardware\t: Qualcomm Technologies, Inc SM8650\n"
    )
    (root / "proc/meminfo").write_text("MemTotal:       11834964 kB\nMemFree:         712332 kB\n")
    bin_dir = root / "system/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    props = "".join(f"echo '[{k}]: [{v}]'\n" for k, v in getprop.items())
    (bin_dir / "getprop").write_text(
        '#!/bin/sh\nif [ -n "$1" ]; then\n'
        + "".join(f"  [ \"$1\" = '{k}' ] && echo '{v}'\n" for k, v in getprop.items())
        + "  exit 0\nfi\n"
        + props
    )
    # toybox taskset with a hex mask; the host has fewer cores than the phone, so the stand-in
    # checks the mask and runs the command unpinned.
    (bin_dir / "taskset").write_text(
        '#!/bin/sh\ncase "$1" in *[!0-9a-fA-F]*|\'\') echo "taskset: bad mask $1" >&2; exit 1;;'
        ' esac\nshift\nexec "$@"\n'
    )
    runner = root / "data/local/tmp/onnxruntime_perf_test"
    runner.write_text(
        f"#!{sys.executable}\nimport runpy, sys\n"
        f"sys.argv[0] = {str(HERE / 'standin_perf_test.py')!r}\n"
        f"runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    (root / "runner_line").write_text(runner_line)
    (root / "product_model").write_text(getprop["ro.product.model"])
    (root / "sys/devices/system/cpu/online").write_text(f"0-{len(CPU_MAX_FREQ_KHZ) - 1}\n")
    for script in (bin_dir / "getprop", bin_dir / "taskset", runner):
        script.chmod(0o755)
    return root


class _Stream:
    def __init__(self, local_id: int, remote_id: int, service: bytes):
        self.local_id, self.remote_id, self.service = local_id, remote_id, service
        self.sync_buffer = b""
        self.push_path: Path | None = None
        self.push_data = bytearray()
        self.push_mode = 0o644


class AdbStandin:
    def __init__(
        self,
        sandbox: Path,
        authorized_keys: list[bytes] | None = None,
        allow_new_keys: bool = True,
        allow_delay_s: float = 0.2,
        preexec: Callable[[], None] | None = None,
    ):
        self.sandbox = sandbox
        # Run in each shell command's process before it starts: the fleet lowers the
        # phone's CPU priority with it, so a lab of stand-ins on one host yields the CPU to
        # the server, as phones (other machines) would.
        self.preexec = preexec
        self.authorized = [parse_android_pubkey(k) for k in (authorized_keys or [])]
        self.allow_new_keys, self.allow_delay_s = allow_new_keys, allow_delay_s
        self.port = 0
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.processes: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self.commands: list[str] = []  # every shell command, for tests to inspect
        self.auth_prompts = 0
        self.pushed: list[str] = []
        self.frozen = threading.Event()
        self.disk_full = False

    # ---------------------------------------------------------------- faults
    def freeze(self) -> None:
        """Stop answering without closing anything (a phone gone from the network)."""
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()

    def set_zone(self, index: int, celsius: float) -> None:
        (self.sandbox / f"sys/class/thermal/thermal_zone{index}/temp").write_text(
            f"{int(celsius * 1000)}\n"
        )

    def set_runner_line(self, line: str) -> None:
        (self.sandbox / "runner_line").write_text(line)

    def setting(self, name: str, value: str) -> None:
        """A stand-in runner setting (standin_perf_test.py), e.g. `runner_kill_at`."""
        (self.sandbox / name).write_text(value)

    def take_cpu_offline(self, cpu: int) -> None:
        """As the kernel shows an offline CPU: absent from `online`, 0 kHz in cpufreq."""
        online = [c for c in range(len(CPU_MAX_FREQ_KHZ)) if c != cpu]
        (self.sandbox / "sys/devices/system/cpu/online").write_text(
            ",".join(map(str, online)) + "\n"
        )
        (self.sandbox / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq").write_text(
            "0\n"
        )

    def remove_runner(self) -> None:
        (self.sandbox / "data/local/tmp/onnxruntime_perf_test").unlink()

    def set_free_storage(self, kb: int) -> None:
        """`df -k` reports this much available on every file system."""
        df = self.sandbox / "system/bin/df"
        df.write_text(
            "#!/bin/sh\necho 'Filesystem 1K-blocks Used Available Use% Mounted on'\n"
            f"echo '/dev/block/dm-5 117000000 116000000 {kb} 99% /data'\n"
        )
        df.chmod(0o755)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> int:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(4)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self.port

    def fault_during_first_run(self, fault, after_s: float = 0.3) -> None:
        """Call `fault` (e.g. `self.unplug`, `self.freeze`) `after_s` seconds into the first
        runner command the phone receives: a phone lost while it measures."""
        original, fired = self._shell, []

        def shell(conn, stream, command):
            if "onnxruntime_perf_test -e " in command and not fired:
                fired.append(command)
                threading.Timer(after_s, fault).start()
            return original(conn, stream, command)

        self._shell = shell

    def unplug(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.connections = self.connections, []
            procs, self.processes = self.processes, []
        if listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not on Linux
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for proc in procs:
            proc.kill()

    def replug(self) -> None:
        self.start()

    stop = unplug

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # ---------------------------------------------------------------- packets
    @staticmethod
    def _recv_exact(conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("host closed the connection")
            data += chunk
        return data

    def _read(self, conn) -> tuple[int, int, int, bytes]:
        command, arg0, arg1, length, checksum, magic = struct.unpack(
            "<6I", self._recv_exact(conn, 24)
        )
        if magic != command ^ 0xFFFFFFFF:
            raise ConnectionError(f"bad magic {magic:#x} for command {command:#x}")
        data = self._recv_exact(conn, length) if length else b""
        if checksum and sum(data) & 0xFFFFFFFF != checksum:
            raise ConnectionError("bad data checksum")
        return command, arg0, arg1, data

    def _send(self, conn, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        while self.frozen.is_set():  # a frozen phone answers nothing, and closes nothing
            time.sleep(0.05)
        header = struct.pack(
            "<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF
        )
        conn.sendall(header + data)

    def _model(self) -> str:
        path = self.sandbox / "product_model"  # make_sandbox(props=...): one phone of a fleet
        return path.read_text() if path.exists() else GETPROP["ro.product.model"]

    def _banner(self) -> bytes:
        return (
            f"device::ro.product.name=e3q;ro.product.model={self._model()};"
            "ro.product.device=e3q;features=cmd\0"
        ).encode()

    # ---------------------------------------------------------------- session
    def _serve(self, conn: socket.socket) -> None:
        try:
            self._session(conn)
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()

    def _session(self, conn) -> None:
        command, _, maxdata, _ = self._read(conn)
        if command != A_CNXN:
            raise ConnectionError("expected CNXN first")
        self.maxdata = min(maxdata, MAXDATA)
        token = os.urandom(20)
        self._send(conn, A_AUTH, AUTH_TOKEN, 0, token)
        while True:
            command, arg0, _, data = self._read(conn)
            if command != A_AUTH:
                raise ConnectionError("expected AUTH before any stream")
            if arg0 == AUTH_SIGNATURE:
                if any(signature_valid(token, data, key) for key in self.authorized):
                    break
                token = os.urandom(20)
                self._send(conn, A_AUTH, AUTH_TOKEN, 0, token)
            elif arg0 == AUTH_RSAPUBLICKEY:
                self.auth_prompts += 1
                if not self.allow_new_keys:
                    while True:  # the dialog stays on screen; nobody taps Allow
                        self._read(conn)
                time.sleep(self.allow_delay_s)
                self.authorized.append(parse_android_pubkey(data))
                break
        self._send(conn, A_CNXN, VERSION, self.maxdata, self._banner())
        streams: dict[int, _Stream] = {}
        next_id = 1
        while True:
            command, arg0, arg1, data = self._read(conn)
            if command == A_OPEN:
                stream = _Stream(next_id, arg0, data.rstrip(b"\0"))
                next_id += 1
                streams[stream.local_id] = stream
                self._send(conn, A_OKAY, stream.local_id, stream.remote_id)
                if stream.service.startswith(b"shell:"):
                    self._shell(conn, stream, stream.service[6:].decode())
                    streams.pop(stream.local_id, None)
                elif not stream.service.startswith(b"sync:"):
                    self._send(conn, A_CLSE, stream.local_id, stream.remote_id)
                    streams.pop(stream.local_id, None)
            elif command == A_WRTE:
                stream = streams.get(arg1)
                if stream is None:
                    continue
                self._send(conn, A_OKAY, stream.local_id, stream.remote_id)
                stream.sync_buffer += data
                self._sync(conn, stream)
            elif command == A_CLSE:
                stream = streams.pop(arg1, None)
                if stream is not None:
                    self._send(conn, A_CLSE, stream.local_id, stream.remote_id)
            elif command == A_OKAY:
                continue
            else:
                raise ConnectionError(f"unexpected command {command:#x}")

    def _write(self, conn, stream: _Stream, data: bytes) -> None:
        """WRTE in chunks, each acknowledged by the host's OKAY (flow control)."""
        for start in range(0, len(data), self.maxdata):
            self._send(
                conn, A_WRTE, stream.local_id, stream.remote_id, data[start : start + self.maxdata]
            )
            while True:
                command, _, _, _ = self._read(conn)
                if command == A_OKAY:
                    break

    # ---------------------------------------------------------------- services
    def map_path(self, text: str) -> str:
        root = str(self.sandbox)
        for prefix in ("/data/local/tmp", "/sys/", "/proc/"):
            text = text.replace(prefix, root + prefix)
        return text

    def _shell(self, conn, stream: _Stream, command: str) -> None:
        self.commands.append(command)
        env = {
            **os.environ,
            "PATH": f"{self.sandbox / 'system/bin'}:{os.environ['PATH']}",
            "TAILOR_STANDIN_ROOT": str(self.sandbox),
        }
        proc = subprocess.Popen(
            ["sh", "-c", self.map_path(command)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.sandbox / "data/local/tmp",
            env=env,
            preexec_fn=self.preexec,
        )
        with self.lock:
            self.processes.append(proc)
        try:
            while True:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                self._write(conn, stream, chunk.replace(str(self.sandbox).encode(), b""))
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
            with self.lock:
                if proc in self.processes:
                    self.processes.remove(proc)
        self._send(conn, A_CLSE, stream.local_id, stream.remote_id)

    def _device_path(self, path: str) -> Path:
        return Path(self.map_path(path))

    def _sync(self, conn, stream: _Stream) -> None:
        buf = stream.sync_buffer
        while len(buf) >= 8:
            ident, size = struct.unpack_from("<4sI", buf, 0)
            if ident == b"DONE" and stream.push_path is not None:
                buf = buf[8:]
                if self.disk_full:
                    message = b"couldn't write: No space left on device"
                    stream.push_path = None
                    self._write(conn, stream, struct.pack("<4sI", b"FAIL", len(message)) + message)
                    continue
                stream.push_path.parent.mkdir(parents=True, exist_ok=True)
                stream.push_path.write_bytes(bytes(stream.push_data))
                stream.push_path.chmod(stream.push_mode & 0o777)
                self.pushed.append(str(stream.push_path))
                stream.push_path = None
                self._write(conn, stream, struct.pack("<4sI", b"OKAY", 0))
                continue
            if ident == b"QUIT":
                buf = buf[8:]
                continue
            if len(buf) < 8 + size:
                break
            payload, buf = buf[8 : 8 + size], buf[8 + size :]
            if ident == b"STAT":
                path = self._device_path(payload.decode())
                try:
                    st = path.stat()
                    reply = struct.pack("<4s3I", b"STAT", st.st_mode, st.st_size, int(st.st_mtime))
                except OSError:
                    reply = struct.pack("<4s3I", b"STAT", 0, 0, 0)
                self._write(conn, stream, reply)
            elif ident == b"SEND":
                path, _, mode = payload.decode().rpartition(",")
                stream.push_path = self._device_path(path)
                stream.push_mode = int(mode) if mode.isdigit() else 0o644
                stream.push_data = bytearray()
            elif ident == b"DATA":
                stream.push_data += payload
            elif ident == b"RECV":
                path = self._device_path(payload.decode())
                try:
                    content = path.read_bytes()
                except OSError as exc:
                    message = str(exc).encode()
                    self._write(conn, stream, struct.pack("<4sI", b"FAIL", len(message)) + message)
                    continue
                out = b"".join(
                    struct.pack("<4sI", b"DATA", len(content[i : i + 65536]))
                    + content[i : i + 65536]
                    for i in range(0, len(content), 65536)
                )
                self._write(conn, stream, out + struct.pack("<4sI", b"DONE", 0))
            else:
                message = f"unsupported sync request {ident!r}".encode()
                self._write(conn, stream, struct.pack("<4sI", b"FAIL", len(message)) + message)
        stream.sync_buffer = buf


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


__all__ = ["AdbStandin", "make_sandbox", "parse_android_pubkey", "signature_valid", "stat_mod"]
