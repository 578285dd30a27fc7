"""The FastAPI application: routers under `core.protocol.API_PREFIX`, guards on every
request, error mapping.

Guards (`api.guards`): bodies over `max_body_bytes` get 413 as soon as the limit is passed
and JSON nested too deep gets 400, before any parsing; every response carries nosniff and a
Content-Security-Policy. Unknown fields and invalid values get 422 naming the field; a
database that is down gives 503 until it is back (a connection the database closed is
replaced when taken from the pool, store/engine.py: nothing to restart). Paths are matched
exactly: no trailing-slash redirect, whose Location would be built from the client's Host
header. Secrets are kept only as SHA-256 digests and never logged.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from api.auth import EnrollLimit, digest
from api.generation_views import GenerationViews
from api.guards import BodyLimit, SecurityHeaders, ServerTiming, parse_proxies
from api.poll_cache import PollCache
from api.routes import catalog, devices, fleet, health, jobs, results, tasks
from api.schemas.errors import ERROR_RESPONSES
from api.settings import Settings
from core.job_spec import JobSpec
from core.protocol import API_PREFIX
from core.strict import BlamedField, error_message
from store import Conflict, NotFound
from store.artifacts import BadName
from store.engine import make_engine, session_factory, upgrade
from store.tasks import BadReport, extend_leases

log = logging.getLogger("tailor.api")


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


def create_app(
    settings: Settings | None = None, migrate: bool = True, starting: bool = True
) -> FastAPI:
    """The app over `settings` (else the environment's), the schema upgraded if `migrate`;
    `starting`: a server that starts (not one of its worker processes)."""
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url())
    if migrate:
        upgrade(engine)
    if starting:  # leases run their own length again (store.tasks.extend_leases)
        extend_leases(session_factory(engine))
    app = FastAPI(
        lifespan=_lifespan,
        title="Tailor",
        version="0.1.0",
        description="Evolve small language-model architectures for real phones.",
        redirect_slashes=False,
    )
    _set_state(app, settings, engine)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        SecurityHeaders,
        docs_paths=(app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url),
    )
    app.add_middleware(ServerTiming)  # outermost: the whole time the app held the request
    _add_error_handlers(app)
    app.openapi = _openapi_with_job_spec(app)
    for module in (health, catalog, jobs, results, devices, fleet, tasks):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    _add_dashboard(app)
    return app


def freeze_startup_objects() -> None:
    """Collect once, then put every object alive (modules, routes, schemas, the ORM's
    mappers) beyond the garbage collector's reach (`gc.freeze`). Why: a full collection
    walks every tracked object, and the ~135 000 a serving process holds after its imports
    made each one 80-110 ms with every request stopped meanwhile, a device lab's slowest
    leases (bench/README, "Device lab under load"). For a process that serves until it
    exits (`tailor serve`): what it freezes is never collected."""
    gc.collect()
    gc.freeze()


def worker_app() -> FastAPI:
    """One of `tailor serve --workers N`'s processes: the app over the environment's
    settings (the parent migrated the schema before it started them), its startup objects
    frozen. Each gives every open lease its length again as it starts, when the server can
    serve again: extended only by the parent, before its workers had imported everything
    (seconds on a busy machine), leases ran out under agents still measuring and 4 tasks
    of a fleet run were measured twice (bench/README, tenth runs). A worker its supervisor
    starts again extends them too: a dead device's task then waits one lease longer. Each
    process keeps its own poll caches; the enrollment rate limit is counted in the database."""
    app = create_app(migrate=False)
    freeze_startup_objects()
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    """The synchronous routes' thread limit (`request_threads`), set in the serving loop
    (anyio keeps one limiter per event loop)."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = app.state.settings.request_threads
    yield


def _set_state(app: FastAPI, settings: Settings, engine: Engine) -> None:
    """What the routes read off `app.state`: settings, database, secrets' digests, caches."""
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.admin_key_digest = _admin_key_digest(settings)
    app.state.enroll_token_digest = digest(settings.enroll_token) if settings.enroll_token else None
    app.state.enroll_limiter = EnrollLimit(app.state.sessions, settings.enroll_attempts_per_minute)
    app.state.artifact_dir = settings.resolved_artifact_dir()
    app.state.poll_cache = PollCache()
    app.state.generation_views = GenerationViews()
    app.state.trusted_proxies = parse_proxies(settings.trusted_proxies)


def _field(err: dict) -> str:
    """The dotted field a validation error is about: its location below the body, and below
    that the field a check across fields blamed (core.strict.BlamedField); "body" for a body
    that is not JSON (pydantic's loc is then ("body", <offset>)) or a check of the whole."""
    if err["type"] == "json_invalid":
        return "body"
    blamed = (err.get("ctx") or {}).get("error")
    below = blamed.field.split(".") if isinstance(blamed, BlamedField) else []
    return ".".join(str(p) for p in [*err["loc"], *below] if p != "body") or "body"


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON with a `detail`: 422 names the field, 503 says retry."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        errors = [
            {
                "field": _field(err),
                "message": error_message(err),
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return JSONResponse(
            {"detail": f"{first['field']}: {first['message']}", "errors": errors}, status_code=422
        )

    @app.exception_handler(BadReport)
    async def bad_report(_: Request, exc: BadReport):
        return JSONResponse(
            {
                "detail": f"{exc.field}: {exc}",
                "errors": [{"field": exc.field, "message": str(exc), "type": "value_error"}],
            },
            status_code=422,
        )

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
        return JSONResponse(
            {"detail": "database unavailable, retry shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def database_rejected(_: Request, exc: DBAPIError):
        log.warning("database rejected a value: %s", type(exc.orig).__name__)
        return JSONResponse(
            {"detail": "a value is out of the range the database accepts"}, status_code=400
        )


def _openapi_with_job_spec(app: FastAPI) -> Callable[[], dict]:
    """Add `JobSpec`: POST /jobs validates it off the loop, unseen by FastAPI."""

    def openapi_with_job_spec() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=app.description
            )
            spec = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(spec.pop("$defs", {}))
            components["JobSpec"] = spec
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi_with_job_spec


def _add_dashboard(app: FastAPI) -> None:
    """The dashboard at /, plotly served from the installed package, not a CDN."""
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
