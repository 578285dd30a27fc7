"""Cheap dashboard polling: an entity tag per polled view and its serialised body, cached.

A generation is immutable once written, so what `generations?since=N` and `pareto` return
changes only when the job writes a generation, changes status, or finishes a candidate of
the generation still being evaluated. The routes compute a version of the job in one small
query (`store.polling.poll_version`), answer `If-None-Match` with 304 when it matches, and
otherwise serve the JSON body this cache holds for that version, building it once however
many pollers ask (a byte-bounded LRU, shared by the worker threads; concurrent requests for
a version being built wait for that one build).

The version query itself is shared (`VersionFlights`, on the event loop): however many
pollers of a job arrive together, one query is in flight at a time, and every request that
arrived while it ran is answered by the next one, which starts when it ends. A request is
so always answered by a read that began after it arrived: nothing is stale, and a burst of
N pollers costs about two queries instead of N. A memo window (`version_ttl_s`, off by
default) additionally reuses a version read less than that long ago; a change then shows up
at most that much later.

The hot path (version known, ETag matches, or the body cached) runs on the event loop: no
worker thread, no ORM session, no pydantic model, no JSON encoding; only a query or a build
goes to a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

CACHE_CONTROL = "no-cache"  # browsers keep the body and revalidate it with If-None-Match


@dataclass
class _Flight:
    loop: asyncio.AbstractEventLoop
    running: asyncio.Future | None = None  # the read in flight
    waiting: asyncio.Future | None = None  # the read that starts when it ends
    value: Any = None
    read_at: float = float("-inf")  # when the read that gave `value` started


class VersionFlights:
    """Per-key reads shared by the requests that arrive together (see the module docstring).

    `get(key, read, fast)` returns `read()`'s value from a read that started after the call
    (or, with `ttl_s` > 0, one that started at most `ttl_s` seconds before it). `read` is
    blocking and runs in a worker thread; its exception is raised to every request it
    answers. `fast`, if given, is tried first on the event loop and must never block: its
    answer, unless None, is taken as that of a fresh read (`store.polling.
    poll_version_if_unchanged`: the last read's answer when nothing was committed since).
    """

    def __init__(self, ttl_s: float = 0.0, max_keys: int = 1024):
        self.ttl_s, self.max_keys = ttl_s, max_keys
        self._flights: OrderedDict[Hashable, _Flight] = OrderedDict()
        self.reads = self.requests = self.fast = 0

    async def get(
        self, key: Hashable, read: Callable[[], Any], fast: Callable[[], Any] | None = None
    ) -> Any:
        loop = asyncio.get_running_loop()
        self.requests += 1
        if fast is not None:
            value = fast()
            if value is not None:
                self.fast += 1
                return value
        flight = self._flights.get(key)
        if flight is None or flight.loop is not loop:  # new key, or an app on a new loop
            flight = self._flights[key] = _Flight(loop)
            while len(self._flights) > self.max_keys:
                oldest, old = next(iter(self._flights.items()))
                if old.running is not None:
                    break
                del self._flights[oldest]
        self._flights.move_to_end(key)
        if (
            self.ttl_s > 0
            and flight.value is not None
            and time.monotonic() - flight.read_at <= self.ttl_s
        ):
            return flight.value
        if flight.running is None:  # nothing in flight: this request starts a read
            future = flight.running = loop.create_future()
            loop.create_task(self._fly(key, flight, future, read))
        else:  # a read began before this request arrived: it waits for the next one
            if flight.waiting is None:
                flight.waiting = loop.create_future()
            future = flight.waiting
        return await asyncio.shield(future)  # a client leaving does not cancel the read

    async def _fly(
        self, key: Hashable, flight: _Flight, future: asyncio.Future, read: Callable[[], Any]
    ) -> None:
        while True:
            flight.running = future
            started = time.monotonic()
            self.reads += 1
            try:
                value = await run_in_threadpool(read)
            except Exception as exc:  # noqa: BLE001 - handed to the requests that wait
                future.set_exception(exc)
                future.add_done_callback(lambda f: f.exception())  # retrieved if none waits
                flight.value, flight.read_at = None, float("-inf")
            else:
                future.set_result(value)
                flight.value, flight.read_at = value, started
            flight.running = None
            if flight.waiting is None:
                break
            future, flight.waiting = flight.waiting, None
        if self.ttl_s <= 0 and self._flights.get(key) is flight:
            del self._flights[key]  # nothing to remember between bursts


class PollCache:
    def __init__(self, max_bytes: int = 64 << 20, version_ttl_s: float = 0.0):
        self.max_bytes = max_bytes
        self.versions = VersionFlights(version_ttl_s)
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self.hits = self.misses = 0

    def cached(self, etag: str) -> bytes | None:
        """The body held for this version, if any (a hit; no build)."""
        with self._lock:
            body = self._bodies.get(etag)
            if body is not None:
                self._bodies.move_to_end(etag)
                self.hits += 1
            return body

    def body(self, etag: str, build: Callable[[], bytes]) -> bytes:
        body = self.cached(etag)
        if body is not None:
            return body
        with self._lock:
            building = self._building.setdefault(etag, threading.Lock())
        with building:  # one build per version: concurrent pollers wait for it
            body = self.cached(etag)  # built by the poller we waited for
            if body is not None:
                return body
            try:
                body = build()
            finally:
                with self._lock:
                    self._building.pop(etag, None)
        with self._lock:
            self.misses += 1
            if etag not in self._bodies and len(body) <= self.max_bytes:
                self._bodies[etag] = body
                self._size += len(body)
                while self._size > self.max_bytes:
                    _, old = self._bodies.popitem(last=False)
                    self._size -= len(old)
        return body


def matches(request: Request, etag: str) -> bool:
    """Whether the client already holds this version (If-None-Match, weak or strong)."""
    header = request.headers.get("if-none-match", "")
    if header.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
    return etag in tags


def conditional(
    request: Request, cache: PollCache, etag: str, build: Callable[[], bytes]
) -> Response:
    """304 if the client holds `etag`, else the cached (or, once, built) body; blocking."""
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if matches(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(cache.body(etag, build), media_type="application/json", headers=headers)


async def conditional_async(
    request: Request, cache: PollCache, etag: str, build: Callable[[], bytes]
) -> Response:
    """`conditional` on the event loop: 304 and cache hits answered there, a build (which
    reads the database) in a worker thread."""
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if matches(request, etag):
        return Response(status_code=304, headers=headers)
    body = cache.cached(etag)
    if body is None:
        body = await run_in_threadpool(cache.body, etag, build)
    return Response(body, media_type="application/json", headers=headers)
