"""The faults a device lab sees, injected into a running fleet (each a flag of
`bench.fleet`, each a small test in tests/fleet/):

- `server-kill`: the API server killed with SIGKILL and started again on the same port and
  database; every agent must be back (a heartbeat after the restart) within 30 s;
- `link-stall`: 10 % of the agents' links (at least one) fail mid-upload through their
  proxies: agent to server, the measurement report cut before it arrives, cut after the
  server stored it (the answer lost), or stalled; agent to phone, a graph push cut or
  stalled;
- `unplug`: a phone unplugged while its runner measures, plugged back a moment later;
- `restart-storm`: every agent killed at once (a power cut: no release of their tasks) and
  started again at once; known devices re-attach with their saved tokens, no enrollment.
"""

from __future__ import annotations

import math
import signal
import time
from datetime import datetime, timezone

from sqlalchemy import select

from store import transaction
from store.models import Device, as_utc

from .agents import LINK_FAULT_EVERY, Bench
from .proxy import Fault

FAULTS = ("server-kill", "link-stall", "unplug", "restart-storm")
# When each fault hits: the share of the run's tasks done by then.
AT_SHARE = {"unplug": 0.15, "server-kill": 0.35, "restart-storm": 0.6}
SERVER_LINK_FAULTS = ("cut-reply", "cut-request", "stall")
PHONE_LINK_FAULTS = ("cut-request", "stall")


def check_faults(names) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r}; choose from {', '.join(FAULTS)}")
    return tuple(names)


def arm_links(benches: list[Bench]) -> list[str]:
    """Arm link faults on 10 % of the benches (at least one): on the server link, their next
    three report uploads are cut before they arrive, cut after (the answer lost) and
    stalled; on the phone link, their next two graph pushes are cut and stalled."""
    chosen = benches[::LINK_FAULT_EVERY]
    for bench in chosen:
        bench.server_link.arm(Fault(SERVER_LINK_FAULTS, b"/report", stall_s=1.5))
        bench.phone_link.arm(Fault(PHONE_LINK_FAULTS, b"SEND", stall_s=1.5))
    return [f"bench {bench.index} ({bench.device_class})" for bench in chosen]


def unplug_mid_measurement(bench: Bench, away_s: float = 2.0) -> None:
    """The next runner command on this phone loses its cable 0.2 s in (when: the rack's
    `pulled`); plugged back after `away_s`."""
    bench.rack.unplug_mid_measurement(bench.index, after_s=0.2, away_s=away_s)


def heartbeats_since(sessions, moment: float) -> int:
    """Devices whose last heartbeat came after `moment` (unix time)."""
    since = datetime.fromtimestamp(moment, timezone.utc)
    with transaction(sessions) as s:
        beats = s.scalars(select(Device.last_heartbeat_at)).all()
    return sum(1 for beat in beats if beat is not None and as_utc(beat) > since)


def wait_agents_back(sessions, count: int, since: float, timeout_s: float = 120.0) -> float:
    """Seconds from `since` until all `count` devices heartbeated again (inf on timeout)."""
    while time.time() - since < timeout_s:
        if heartbeats_since(sessions, since) >= count:
            return time.time() - since
        time.sleep(0.2)
    return math.inf


def kill_and_restart_server(server, down_s: float = 1.0) -> float:
    """SIGKILL the server, keep it down `down_s`, start it again; when it answered again."""
    server.kill9()
    time.sleep(down_s)
    server.restart()
    return server.restarts[-1]


def restart_storm(benches: list[Bench]) -> float:
    """A power cut for every agent at once (SIGKILL), then all started together."""
    for bench in benches:
        bench.stop_agent(signal.SIGKILL)
    started = time.time()
    for bench in benches:
        bench.start_agent()
    return started
