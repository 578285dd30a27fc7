"""The fleet's stand-in phones, all in one child process of their own (a phone rack).

Why a process of its own: phones are other machines than the server's and the network's.
Fifty stand-ins answer ADB packets, hash pushed files and start runner shells in Python
threads; in the harness process they took its interpreter lock from the link proxies that
time every request, and at the harness's CPU priority they competed with the server (a
50-agent run: the harness process alone used 0.4 core, its children's runners another
core). Here they run at the lab's priority (niceness 19 in a session of their own whose
scheduling group is niced too, as the agents'), and the proxies left in the harness time
requests without waiting behind them.

The parent drives the rack over a pipe: `start` answers each phone's ADB port, `unplug`
arms `AdbStandin.fault_during_first_run` on one phone (unplugged `after_s` into its next
runner command, plugged back `away_s` later), `pulled` says when those unplugs happened.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PhoneSpec:
    index: int
    sandbox: Path


def _serve_rack(conn, specs: list[PhoneSpec], priority: str) -> None:
    """The rack's process: start every phone, then answer the parent's commands."""
    from tests.device_agent.adb_standin import AdbStandin

    from .server import lower_priority

    if priority != "normal":
        os.setsid()  # a session (scheduling group) of its own, which its runners share
        lower_priority(priority)
    phones = {s.index: AdbStandin(s.sandbox, allow_delay_s=0.0) for s in specs}
    conn.send({i: phone.start() for i, phone in phones.items()})
    pulled: list[float] = []
    while True:
        try:
            command, *args = conn.recv()
        except EOFError:
            command = "stop"
        if command == "stop":
            for phone in phones.values():
                phone.stop()
            conn.send("stopped")
            return
        if command == "unplug":
            index, after_s, away_s = args
            phone = phones[index]

            def pull(phone=phone, away_s=away_s):
                pulled.append(time.time())
                phone.unplug()
                threading.Timer(away_s, phone.replug).start()

            phone.fault_during_first_run(pull, after_s=after_s)
            conn.send("armed")
        elif command == "pulled":
            conn.send(list(pulled))


class PhoneRack:
    """`PhoneRack(specs, priority).start()` -> {index: ADB port}; `priority` as
    `server.lower_priority` takes it (default `low`, the lab's)."""

    def __init__(self, specs: list[PhoneSpec], priority: str = "low"):
        self.specs, self.priority = specs, priority
        self._lock = threading.Lock()  # one command and its answer at a time
        self._conn = None
        self._proc = None

    def start(self, timeout_s: float = 60.0) -> dict[int, int]:
        context = multiprocessing.get_context("spawn")  # no copy of the harness's threads
        self._conn, child = context.Pipe()
        self._proc = context.Process(
            target=_serve_rack, args=(child, self.specs, self.priority), daemon=True
        )
        self._proc.start()
        child.close()
        return self._ask(None, timeout_s)

    def unplug_mid_measurement(self, index: int, after_s: float, away_s: float) -> None:
        self._ask(("unplug", index, after_s, away_s))

    def pulled(self) -> list[float]:
        """Unix times at which armed unplugs fired, in order."""
        return self._ask(("pulled",))

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            self._ask(("stop",), timeout_s=30.0)
        except (OSError, EOFError, TimeoutError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._proc = None

    def _ask(self, message, timeout_s: float = 30.0):
        with self._lock:
            if message is not None:
                self._conn.send(message)
            if not self._conn.poll(timeout_s):
                raise TimeoutError(f"the phone rack did not answer {message!r} in {timeout_s} s")
            return self._conn.recv()
