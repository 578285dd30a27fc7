"""Cheap dashboard polling: an entity tag per polled view and its serialised body, cached.

A generation is immutable once written, so what `generations?since=N` and `pareto` return
changes only when the job writes a generation, changes status, or finishes a candidate of
the generation still being evaluated. The routes compute a
version in one small query (`store.results.poll_version`), answer `If-None-Match` with
304 when it matches, and otherwise serve the JSON body this cache holds for that version,
building it once however many pollers ask (a byte-bounded LRU, shared by the worker threads;
concurrent requests for a version being built wait for that one build).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from fastapi import Request, Response

CACHE_CONTROL = "no-cache"  # browsers keep the body and revalidate it with If-None-Match


class PollCache:
    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self.hits = self.misses = 0

    def body(self, etag: str, build: Callable[[], bytes]) -> bytes:
        with self._lock:
            body = self._bodies.get(etag)
            if body is not None:
                self._bodies.move_to_end(etag)
                self.hits += 1
                return body
            building = self._building.setdefault(etag, threading.Lock())
        with building:  # one build per version: concurrent pollers wait for it
            with self._lock:
                body = self._bodies.get(etag)
                if body is not None:
                    self.hits += 1
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


def conditional(request: Request, cache: PollCache, etag: str,
                build: Callable[[], bytes]) -> Response:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if matches(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(cache.body(etag, build), media_type="application/json", headers=headers)
