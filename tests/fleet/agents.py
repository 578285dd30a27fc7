"""One lab bench of the fleet: a loopback stand-in phone in sleep mode (its device class's
latency; every bench's phone lives in the fleet's phone rack, tests/fleet/rack.py), a real
`tailor agent` process driving it, and the proxies on its links: every
agent talks to the server through one (its request latencies are timed there, and the link
can fail); every tenth bench, the ones whose links `faults.arm_links` may cut, also talks to
its phone through one (the others directly: fewer threads beside the timing proxies).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.device_agent.adb_standin import make_sandbox

from .proxy import LinkProxy
from .rack import PhoneRack, PhoneSpec
from .server import ENROLL_TOKEN, start_tailor

# Device class -> milliseconds one inference sleeps on its stand-in phones: a flagship, a
# mid-range and a budget phone, so classes drain at different speeds.
DEVICE_CLASSES = {"SM-S928B": 4.0, "SM-A546B": 8.0, "SM-A146P": 12.0}
LINK_FAULT_EVERY = 10  # every tenth bench's links may fail: 10 % of the lab
# In a real lab the agents' hosts and the phones are other machines than the server's; here
# they share its two cores, and fifty agents with their stand-in phones and runners (a
# Python process per measurement) keep both busy (98 % in a 50-agent run). At niceness 19
# (agents, the phone rack and its runners) they weigh 1/68 of the server each in the
# scheduler, so dozens of them cannot outweigh it, and unlike
# SCHED_IDLE they still progress on a full machine (tried: in one PostgreSQL run a
# high-priority job waited 20 s for its first lease, most likely its starved agents'
# doing).
LAB_PRIORITY = "low"
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
LEASED = re.compile(r"leased task (\d+) ")
DONE = re.compile(r"task (\d+) done: ")
REFUSED = re.compile(r"task (\d+)'s report refused by the server: ")


@dataclass
class Bench:
    index: int
    device_class: str
    workdir: Path
    server_port: int
    rack: PhoneRack | None = field(init=False, default=None)
    server_link: LinkProxy = field(init=False)
    phone_link: LinkProxy | None = field(init=False, default=None)
    proc: subprocess.Popen | None = None
    starts: int = 0
    _phone_port: int = field(init=False, default=0)

    def __post_init__(self):
        self.sandbox = make_sandbox(
            self.workdir / "phone",
            props={
                "ro.product.model": self.device_class,
                "ro.serialno": f"FLEET{self.index:04d}",
            },
        )
        (self.sandbox / "runner_sleep_ms").write_text(str(DEVICE_CLASSES[self.device_class]))
        (self.sandbox / "runner_verbose_lines").write_text("3")  # onnxruntime's log, shortened

    def attach(self, rack: PhoneRack, phone_port: int) -> None:
        """Its phone is up in `rack` at `phone_port`: open the links' proxies."""
        self.rack, self._phone_port = rack, phone_port
        self.server_link = LinkProxy(self.server_port, http=True)
        self.server_link.start()
        if self.index % LINK_FAULT_EVERY == 0:
            self.phone_link = LinkProxy(phone_port)
            self.phone_link.start()

    @property
    def phone_port(self) -> int:
        return self._phone_port if self.phone_link is None else self.phone_link.port

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def start_agent(self, poll_s: float = 0.5) -> None:
        """`tailor agent --tcp` through both proxies, with its own config dir (key, token)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TAILOR_", "RAY_"))}
        env["TAILOR_AGENT_RUNTIME_DIR"] = str(self.workdir / "run")  # its phone lock
        self.proc = start_tailor(
            [
                "agent",
                "--server",
                f"http://127.0.0.1:{self.server_link.port}",
                "--enroll-token",
                ENROLL_TOKEN,
                "--tcp",
                f"127.0.0.1:{self.phone_port}",
                "--config-dir",
                str(self.workdir / "agent"),
                "--poll-interval",
                str(poll_s),
                "--adb-timeout",
                "20",
            ],
            env,
            self.log_path,
            priority=LAB_PRIORITY,
        )
        self.starts += 1

    def stop_agent(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self) -> None:
        """The agent and the links (the rack's owner stops the phones)."""
        self.stop_agent()
        self.server_link.stop()
        if self.phone_link is not None:
            self.phone_link.stop()

    def events(self) -> list[tuple[float, str, int]]:
        """(unix time, "leased" | "done" | "refused", task id) from the agent's log lines
        ("refused": an outcome the server did not want, a measurement done in vain)."""
        found = []
        if not self.log_path.exists():
            return found
        for line in self.log_path.read_text(errors="replace").splitlines():
            stamp = LOG_TIME.match(line)
            if stamp is None:
                continue
            when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for kind, pattern in (("leased", LEASED), ("done", DONE), ("refused", REFUSED)):
                hit = pattern.search(line)
                if hit:
                    found.append((when, kind, int(hit.group(1))))
        return found


def start_benches(
    root: Path, count: int, server_port: int, classes: tuple[str, ...] | None = None
) -> tuple[PhoneRack, list[Bench]]:
    """`count` phones spread round-robin over the device classes, in one phone rack (the
    caller stops it after closing the benches)."""
    classes = classes or tuple(DEVICE_CLASSES)
    benches = [
        Bench(i, classes[i % len(classes)], root / f"bench{i:03d}", server_port)
        for i in range(count)
    ]
    rack = PhoneRack([PhoneSpec(b.index, b.sandbox) for b in benches], priority=LAB_PRIORITY)
    ports = rack.start()
    for bench in benches:
        bench.attach(rack, ports[bench.index])
    return rack, benches
