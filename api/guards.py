"""Guards every request passes before a route sees it, as pure ASGI middleware.

- `BodyLimit`: a body longer than `max_body_bytes` gets 413 as soon as the limit is passed,
  declared (Content-Length) or streamed (chunked): the chunks are counted as they arrive
  and the rest is never read, so no client can make the server hold more than the limit.
  JSON nested deeper than `MAX_JSON_DEPTH` levels gets 400 before any parsing.
- `SecurityHeaders`: `X-Content-Type-Options: nosniff` on every response and a
  Content-Security-Policy under which the dashboard (its own scripts and style sheet, inline
  style attributes, SVG plots) works and nothing may frame it.
- `ServerTiming`: every response says how long the app held its request
  (`Server-Timing: app;dur=MS`, the W3C header, which clients that do not know it ignore),
  so a lab's latency can be split into the server's share and the network's and the
  client's (bench.fleet reports both).
- `client_address`: the address rate limits count, which believes `X-Forwarded-For` only
  from a peer named in `trusted_proxies`. The server must therefore run with uvicorn's own
  forwarded-header handling off (`SERVER_OPTIONS`), or uvicorn rewrites the peer first.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from store.timing import REQUEST_WAITS

MAX_JSON_DEPTH = 64

# uvicorn options every server of this app runs with (`tailor serve`, the embedded server):
# the app decides itself whom to believe about forwarded addresses (`client_address`), and
# the server does not announce its name.
SERVER_OPTIONS: dict[str, Any] = {"proxy_headers": False, "server_header": False}

# The dashboard loads /static/app.js, /static/plotly.min.js and /static/style.css, fetches the
# API on its own origin and sets inline style attributes (layer colours); plotly draws SVG and
# injects its own <style> elements and data: images, and needs no eval for the SVG traces.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The interactive API docs (FastAPI's Swagger UI / ReDoc) load their bundle from a CDN and
# start it with an inline script; they get only the framing rule.
DOCS_POLICY = "frame-ancestors 'none'"


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Nesting depth of a JSON document, scanned without parsing (strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


async def _answer(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 past `max_bytes` (counted chunk by chunk), 400 past `MAX_JSON_DEPTH`; the app then
    reads the body it was given, kept whole, which is at most `max_bytes` long."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"body larger than {self.max_bytes} bytes (max_body_bytes)"
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.strip().isdigit():
                    return await _answer(send, 400, "Content-Length is not a number")
                if int(value) > self.max_bytes:
                    return await _answer(send, 413, too_large)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await _answer(send, 413, too_large)  # the rest is never read
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            return await _answer(send, 400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")

        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: http.disconnect

        await self.app(scope, replay, send)


class SecurityHeaders:
    """nosniff and the Content-Security-Policy on every HTTP response."""

    def __init__(self, app, docs_paths: Iterable[str | None] = ()):
        self.app = app
        self.docs_paths = {p for p in docs_paths if p}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = DOCS_POLICY if scope["path"] in self.docs_paths else CONTENT_SECURITY_POLICY

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-content-type-options", b"content-security-policy")
                ]
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", policy.encode()),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class ServerTiming:
    """`Server-Timing: app;dur=MS, body;dur=MS, thread;dur=MS, db;dur=MS, dblock;dur=MS`.

    app: from the request reaching the app (headers parsed) to its response starting, body
    reading, waits for a request thread and the database included; body: the part of it
    spent waiting for the request's body to arrive (the client's and the network's time, not
    the server's); thread: from the start until the request's first synchronous step ran in
    a worker thread (`mark_thread_start`, the device routes' authentication), i.e. the wait
    for a free thread and the event loop; db: the time its SQL statements ran (PostgreSQL's
    row-lock waits included); dblock: SQLite only, the time its writes queued for the write
    lock (store/timing.py). Parts a request did not have are left out."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        waits: dict[str, float] = {THREAD_CLOCK: started}
        token = REQUEST_WAITS.set(waits)

        async def timed(message):
            if message["type"] == "http.response.start":
                parts = [f"app;dur={(time.perf_counter() - started) * 1000:.2f}"] + [
                    f"{name};dur={seconds * 1000:.2f}"
                    for name, seconds in waits.items()
                    if name != THREAD_CLOCK
                ]
                timing = (b"server-timing", ", ".join(parts).encode())
                message = {**message, "headers": [*message.get("headers", []), timing]}
            await send(message)

        async def timed_receive():
            asked = time.perf_counter()
            message = await receive()
            if message["type"] == "http.request":
                waits["body"] = waits.get("body", 0.0) + time.perf_counter() - asked
            return message

        try:
            await self.app(scope, timed_receive, timed)
        finally:
            REQUEST_WAITS.reset(token)


THREAD_CLOCK = "_started"  # the request's start, for `thread` (not a part of the header)


def mark_thread_start() -> None:
    """Called by a request's first synchronous step, in its worker thread: the `thread` part."""
    waits = REQUEST_WAITS.get()
    if waits is not None and "thread" not in waits and THREAD_CLOCK in waits:
        waits["thread"] = time.perf_counter() - waits[THREAD_CLOCK]


def parse_proxies(values: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`trusted_proxies` entries as networks (a bare IP is a /32 or /128)."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies: {value!r} is not an IP address or network "
                "(e.g. 10.0.0.2 or 10.0.0.0/24)"
            ) from None
    return networks


def _trusted(address: str, proxies) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: Request, proxies) -> str:
    """The peer's address; when the peer is a trusted proxy, the right-most address in
    `X-Forwarded-For` that is not itself a trusted proxy (what the last honest hop saw)."""
    peer = request.client.host if request.client else "?"
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, proxies):
            return hop
    return peer
