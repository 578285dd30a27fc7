"""The FastAPI application: routers under `core.protocol.API_PREFIX`, guards on every
request, error mapping.

Guards: bodies over `max_body_bytes` get 413 and JSON nested deeper than 64 levels gets
400 before any parsing; unknown fields and invalid values get 422 naming the field; a
database that is down gives 503 until it is back (connections are pre-pinged, nothing to
restart). Secrets are kept only as SHA-256 digests and never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from api.auth import RateLimiter, digest
from core.protocol import API_PREFIX
from store.engine import make_engine, session_factory, upgrade
from api.routes import catalog, devices, health, jobs, results, tasks
from api.settings import Settings
from store import Conflict, NotFound
from store.artifacts import BadName

log = logging.getLogger("tailor.api")
MAX_JSON_DEPTH = 64


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


def _admin_key_digest(settings: Settings) -> str:
    """The configured admin key, or one generated into data_dir/admin_key (mode 0600)."""
    if settings.admin_key:
        return digest(settings.admin_key)
    path = Path(settings.data_dir) / "admin_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        log.warning("no TAILOR_ADMIN_KEY set: generated one in %s", path)
    return digest(path.read_text().strip())


def create_app(settings: Settings | None = None, migrate: bool = True) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url())
    if migrate:
        upgrade(engine)
    app = FastAPI(title="Tailor", version="0.1.0",
                  description="Evolve small language-model architectures for real phones.")
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.admin_key_digest = _admin_key_digest(settings)
    app.state.enroll_token_digest = digest(settings.enroll_token) if settings.enroll_token \
        else None
    app.state.enroll_limiter = RateLimiter(settings.enroll_attempts_per_minute)
    app.state.artifact_dir = settings.resolved_artifact_dir()

    @app.middleware("http")
    async def guard_body(request: Request, call_next):
        if request.method in ("POST", "PUT", "PATCH"):
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
                return JSONResponse({"detail": f"body larger than {settings.max_body_bytes} "
                                     "bytes"}, status_code=413)
            body = await request.body()
            if len(body) > settings.max_body_bytes:
                return JSONResponse({"detail": f"body larger than {settings.max_body_bytes} "
                                     "bytes"}, status_code=413)
            if json_depth_exceeds(body, MAX_JSON_DEPTH):
                return JSONResponse({"detail": f"JSON nested deeper than {MAX_JSON_DEPTH} "
                                     "levels"}, status_code=400)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        errors = [{"field": ".".join(str(p) for p in err["loc"] if p != "body") or "body",
                   "message": err["msg"], "type": err["type"]} for err in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return JSONResponse({"detail": f"{first['field']}: {first['message']}",
                             "errors": errors}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(BadName)
    async def bad_name(_: Request, exc: BadName):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_down(_: Request, exc: DBAPIError):
        log.error("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
        return JSONResponse({"detail": "database unavailable, retry shortly"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(DBAPIError)
    async def database_rejected(_: Request, exc: DBAPIError):
        log.warning("database rejected a value: %s", type(exc.orig).__name__)
        return JSONResponse({"detail": "a value is out of the range the database accepts"},
                            status_code=400)

    for module in (health, catalog, jobs, results, devices, tasks):
        app.include_router(module.router, prefix=API_PREFIX)

    import plotly

    static = Path(__file__).parent / "static"
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_bundle():
        return FileResponse(plotly_js, media_type="application/javascript")

    app.mount("/static", StaticFiles(directory=static), name="static")

    # The page names the API prefix, so the dashboard's script never spells it itself.
    page = (static / "index.html").read_text().replace("{{API_PREFIX}}", API_PREFIX)

    @app.get("/", include_in_schema=False)
    def dashboard():
        return HTMLResponse(page)

    return app
