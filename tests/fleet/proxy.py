"""A loopback TCP proxy between an agent and what it talks to (the API server, or its phone's
ADB port), which times HTTP requests and injects link faults.

Why a proxy: a Wi-Fi ADB link or a lab network fails *between* two healthy programs, in
the middle of a transfer, and neither end can fake that. The proxy forwards bytes both ways
and, when armed, acts on the first chunk from the client that contains a trigger (b"/report"
for a measurement upload, b"SEND" for an ADB push):

- `cut-request`: forwards half of that chunk, then closes both sides (the upload never
  arrives whole);
- `cut-reply`: forwards the whole chunk, then closes both sides as soon as the server
  answers, dropping the answer (the server stored it, the client never hears so);
- `stall`: holds the chunk for `stall_s`, then forwards it (a link gone quiet).

Both of its sockets send without Nagle's delay (TCP_NODELAY), as the agent's HTTP client and
the server do: otherwise a request whose headers and body reach the proxy apart has its
body held until the server acknowledges the headers, which a delayed acknowledgement puts
off by 40 ms (the sixth fleet runs' lease p50 of about 50 ms was mostly that).

Timing: for HTTP links it records, per request path, the time from the request's first
byte to the response's first byte (`latencies`), the latency an agent sees, queueing in
the server included; and beside it the server's own share, the time its app held the
request (`server_ms`, from the response's `Server-Timing: app;dur=MS` header,
api.guards.ServerTiming): what is left is the network, uvicorn's event loop and this
proxy, all of them on a loaded machine's run queue. The header's other parts (the wait for
the request's body, for a request thread, SQL time, SQLite's write-lock queue) are kept per
request in `server_parts`, to say where the server's own tail goes.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

MODES = ("cut-request", "cut-reply", "stall")
HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"PATCH ")
SERVER_TIMING = re.compile(rb"\r\nserver-timing: *app;dur=([0-9.]+)", re.IGNORECASE)
SERVER_TIMING_PART = re.compile(rb"([a-z]+);dur=([0-9.]+)")


@dataclass
class Fault:
    """`modes`, one per hit, in turn: the fault disarms after the last."""

    modes: tuple[str, ...]
    trigger: bytes
    stall_s: float = 2.0
    hits: int = 0


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    pending: deque = field(default_factory=deque)  # (path, started) of unanswered requests
    drop_reply: bool = False


class LinkProxy:
    def __init__(self, target_port: int, http: bool = False):
        self.target_port, self.http = target_port, http
        self.port = 0
        self.fault: Fault | None = None
        self.fired: list[tuple[str, float]] = []  # (mode, when) of every fault that hit
        self.latencies: dict[str, list[float]] = defaultdict(list)  # path -> ms
        self.server_ms: dict[str, list[float]] = defaultdict(list)  # path -> the server's ms
        self.server_parts: dict[str, list[dict[str, float]]] = defaultdict(list)  # every part
        self.timeline: list[tuple[float, str, float]] = []  # (unix time, path, ms)
        self.lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._links: list[_Link] = []

    def start(self) -> int:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port, self._listener = listener.getsockname()[1], listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self.port

    def arm(self, fault: Fault) -> None:
        for mode in fault.modes:
            if mode not in MODES:
                raise ValueError(f"fault mode must be one of {MODES}, got {mode!r}")
        with self.lock:
            self.fault = fault

    def stop(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self.lock:
            links, self._links = self._links, []
        for link in links:
            _close(link)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the far end is down: the client sees a refused link
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, upstream)
            with self.lock:
                self._links.append(link)
            threading.Thread(target=self._pump_up, args=(link,), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(link,), daemon=True).start()

    def _take_fault(self, chunk: bytes) -> tuple[str, float] | None:
        """(mode, stall seconds) of the armed fault this chunk triggers, if any."""
        with self.lock:
            fault = self.fault
            if fault is None or fault.trigger not in chunk:
                return None
            mode = fault.modes[fault.hits]
            fault.hits += 1
            if fault.hits >= len(fault.modes):
                self.fault = None
            self.fired.append((mode, time.time()))
            return mode, fault.stall_s

    def _pump_up(self, link: _Link) -> None:
        """Client to upstream: note each HTTP request, apply an armed fault."""
        try:
            while chunk := link.client.recv(65536):
                if self.http and chunk.startswith(HTTP_METHODS):
                    path = chunk.split(b" ", 2)[1].split(b"?")[0].decode(errors="replace")
                    link.pending.append((path, time.perf_counter()))
                mode, stall_s = self._take_fault(chunk) or ("", 0.0)
                if mode == "cut-request":
                    link.upstream.sendall(chunk[: len(chunk) // 2])
                    return _close(link)
                if mode == "stall":
                    time.sleep(stall_s)
                if mode == "cut-reply":
                    link.drop_reply = True
                link.upstream.sendall(chunk)
        except OSError:
            pass
        _close(link)

    def _pump_down(self, link: _Link) -> None:
        """Upstream to client: time the answers, drop one when a cut-reply fault says so."""
        try:
            while chunk := link.upstream.recv(65536):
                if self.http and chunk.startswith(b"HTTP/1.") and link.pending:
                    path, started = link.pending.popleft()
                    ms = (time.perf_counter() - started) * 1000
                    server = SERVER_TIMING.search(chunk)
                    with self.lock:
                        self.latencies[path].append(ms)
                        self.timeline.append((time.time(), path, ms))
                        if server is not None:
                            self.server_ms[path].append(float(server.group(1)))
                            self.server_parts[path].append(server_parts(chunk, server.start()))
                if link.drop_reply:
                    return _close(link)
                link.client.sendall(chunk)
        except OSError:
            pass
        _close(link)


def server_parts(chunk: bytes, at: int) -> dict[str, float]:
    """Every `name;dur=MS` of the Server-Timing header that starts at `at` in `chunk`."""
    line = chunk[at + 2 :].split(b"\r\n", 1)[0]
    value = line.split(b":", 1)[1]
    return {k.decode(): float(v) for k, v in SERVER_TIMING_PART.findall(value.lower())}


def _close(link: _Link) -> None:
    for sock in (link.client, link.upstream):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
