"""Where a request's time goes inside the database layer, for the API's Server-Timing header.

The API sets a fresh dict per request (`api.guards.ServerTiming`); the engine adds the time
each statement ran (`db`) and, on SQLite, the time a writer queued for the write lock
(`dblock`). Context variables follow a request into its worker threads (anyio copies the
context), so the dict the middleware set is the one the engine's events add to.
"""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_WAITS: ContextVar[dict[str, float] | None] = ContextVar(
    "tailor_request_waits", default=None
)


def add_seconds(name: str, seconds: float) -> None:
    """Add `seconds` to the current request's `name` (nothing outside a request)."""
    waits = REQUEST_WAITS.get()
    if waits is not None:
        waits[name] = waits.get(name, 0.0) + seconds
