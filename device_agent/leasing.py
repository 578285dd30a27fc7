"""Leasing a task without losing one whose answer never came.

Why: a lease call whose answer is lost (the server killed right after it committed the
lease, a cut link, a 500 while building the answer) leaves the device holding a task its
agent knows nothing of. The agent's heartbeats renew that lease for as long as it lives,
and with one lease per device (`max_leases_per_device`) every later lease call is refused
with 409: the task is never measured and its job never finishes.

An agent leases only when it holds no task. So after a lease call that got no usable
answer, and on a 409 (an earlier call's lease was committed after all), it says so with the
heartbeat that carries the device's properties, the one an agent that starts sends: the
server hands every lease of the device back to the queue, uncounted (store.devices), and
the agent leases again. The task is measured once, by whichever device leases it next.
Nothing new on the wire: the heartbeat and its properties are what every agent sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.protocol import TaskAssignment

from .client import AgentClient, ServerError

log = logging.getLogger("tailor.agent")


class Leaser:
    """`hand_back()`: the heartbeat with the device's properties."""

    def __init__(self, client: AgentClient, hand_back: Callable[[], object]):
        self.client, self.hand_back = client, hand_back
        self.unanswered = False  # the last lease call may have leased: hand back first

    def lease(self, lease_seconds: float | None) -> TaskAssignment | None:
        if self.unanswered:
            self._hand_back("the last lease call got no answer")
        try:
            return self._call(lease_seconds)
        except ServerError as exc:
            if exc.status != 409:
                raise
        self._hand_back("the server says this device holds a lease it never heard of")
        return self._call(lease_seconds)

    def _call(self, lease_seconds: float | None) -> TaskAssignment | None:
        try:
            task = self.client.lease(lease_seconds).task
        except ServerError as exc:
            self.unanswered = exc.status >= 500  # a 5xx may follow a committed lease
            raise
        except Exception:  # no answer, or none this agent could read: it may hold a task
            self.unanswered = True
            raise
        self.unanswered = False
        return task

    def _hand_back(self, why: str) -> None:
        log.warning("%s: handing back what the server leased this device, then leasing", why)
        self.hand_back()
        self.unanswered = False
