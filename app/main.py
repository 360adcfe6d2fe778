"""The application: wiring only."""

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.config import Settings, settings
from app.database import DatabaseUnavailable, open_database
from app.docs import mount_docs
from app.middleware import RequestContextMiddleware, configure_logging
from app.migrations import head_revision
from app.ratelimit import RateLimits, SlidingWindowLimiter
from app.routers import auth, health, posts, users, votes
from app.schemas import VoteIn

logger = logging.getLogger("agora")

DESCRIPTION = """
A social-posts API: register, log in (OAuth2 password flow, JWT bearer tokens),
write posts and vote on them. Use **Authorize** with your email as the username.
"""


def create_app(app_settings: Settings = settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()  # here, so that every worker process logs the same way
        if app_settings.secret_key_is_ephemeral:
            logger.warning(
                "SECRET_KEY is missing or weak: using a random key for this process only. Tokens will not "
                "survive a restart or work across workers. Set SECRET_KEY (ENVIRONMENT=production refuses this)."
            )
        app.state.database = await open_database(
            app_settings.async_database_url,
            pool_size=app_settings.DATABASE_POOL_SIZE,
            pool_timeout=app_settings.DATABASE_POOL_TIMEOUT_SECONDS,
            connect_timeout=app_settings.DATABASE_CONNECT_TIMEOUT_SECONDS,
            statement_timeout_ms=app_settings.DATABASE_STATEMENT_TIMEOUT_MS,
        )
        app.state.head_revision = head_revision()
        # Everything built so far (routes, schemas, statements) lives as long as the
        # process: keep it out of the garbage collector's full passes, which otherwise
        # walk it all and showed up as the feed's p99 under load.
        gc.freeze()
        yield
        await app.state.database.close()

    telemetry: TelemetryConfig | None = None
    if not app_settings.TELEMETRY_ENABLED:
        telemetry = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        title="Agora",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=telemetry,
        docs_url=None,  # served by mount_docs (app/docs.py), from local files instead of a CDN
    )
    app.state.settings = app_settings
    app.state.rate_limits = rate_limits(app_settings)
    # Middleware added last runs first: request context (and body limit), then CORS.
    if app_settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=app_settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=app_settings.MAX_REQUEST_BODY_BYTES,
        access_log=app_settings.ACCESS_LOG_ENABLED,
    )
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DBAPIError, database_unavailable)
    app.add_exception_handler(PoolTimeoutError, database_unavailable)
    app.add_exception_handler(DatabaseUnavailable, database_unavailable)
    app.add_exception_handler(TimeoutError, database_unavailable)
    for module in (posts, users, auth, votes, health):
        app.include_router(module.router)
    mount_docs(app)
    app.openapi = exact_integer_bounds(app.openapi)  # type: ignore[method-assign]
    return app


def exact_integer_bounds(generate: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI document, with the integer bounds of request models as pydantic writes them.

    FastAPI passes the document through its own OpenAPI model, which types minimum and maximum as
    float: VoteIn.post_id's maximum 2**63-1 came out as 9.223372036854776e18, which is 2**63.
    """

    def openapi() -> dict[str, Any]:
        document = generate()
        schemas = document["components"]["schemas"]
        for model in (VoteIn,):  # the request models with integer bounds
            schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        return document

    return openapi


def rate_limits(app_settings: Settings) -> RateLimits | None:
    if not app_settings.RATE_LIMIT_ENABLED:
        return None
    window = app_settings.RATE_LIMIT_WINDOW_SECONDS
    return RateLimits(
        failed_logins_per_address=SlidingWindowLimiter(app_settings.RATE_LIMIT_FAILED_LOGINS_PER_ADDRESS, window),
        failed_logins_per_account=SlidingWindowLimiter(app_settings.RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT, window),
        registrations_per_address=SlidingWindowLimiter(app_settings.RATE_LIMIT_REGISTRATIONS_PER_ADDRESS, window),
    )


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with where and why, but without echoing the input (it may be megabytes, or not valid text)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": errors})


async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("database error: %s", exc, exc_info=exc)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": "The database is unavailable; try again shortly"},
        headers={"Retry-After": "1"},
    )


app = create_app()
