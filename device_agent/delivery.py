"""Delivering a task's outcome (its measurement report, or its failure) until the server
has answered.

Why: an outcome that never arrives leaves its task leased to this device, and the agent's
own heartbeats renew that lease for as long as the agent lives, so the task is never measured
(a fleet run lost tasks this way when a server was killed mid-request or a link was cut
mid-upload). The server stores a report once per task and acknowledges a repeat from the
device that sent it, so sending again after an unanswered attempt is safe: retrying is the
one way to learn whether it arrived.

Retried: transport errors (no answer, a cut link, a server down) and 5xx answers, with back-off
(doubling from `first_s`, at most `longest_s`) while the agent runs. Not retried: 4xx
answers, which are final (409: the lease is gone or the task was cancelled; the measurement
is no longer wanted).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import httpx

from .client import ServerError

log = logging.getLogger("tailor.agent")
T = TypeVar("T")
BACKOFF_S = (0.5, 10.0)


class Undelivered(RuntimeError):
    """The agent was stopped before the server answered."""


def deliver(
    send: Callable[[], T],
    what: str,
    stop: threading.Event,
    backoff_s: tuple[float, float] = BACKOFF_S,
) -> T:
    """`send()` until it returns or fails with a 4xx ServerError (raised as it is);
    Undelivered when `stop` is set first."""
    wait, tries = backoff_s[0], 0
    while True:
        try:
            result = send()
        except (httpx.TransportError, ServerError) as exc:
            if isinstance(exc, ServerError) and exc.status < 500:
                raise
            tries += 1
            if tries == 1:
                log.warning("%s not delivered (%s); sending it again until answered", what, exc)
            if stop.wait(wait):
                raise Undelivered(f"{what}: stopped before the server answered") from exc
            wait = min(wait * 2, backoff_s[1])
            continue
        if tries:
            log.info("%s delivered after %d retr%s", what, tries, "y" if tries == 1 else "ies")
        return result
