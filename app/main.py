"""The application: wiring only."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.config import Settings, settings
from app.database import DatabaseUnavailable, create_app_engine
from app.routers import auth, posts, users, votes

logger = logging.getLogger("agora")

DESCRIPTION = """
A social-posts API: register, log in (OAuth2 password flow, JWT bearer tokens),
write posts and vote on them. Use **Authorize** with your email as the username.
"""


def create_app(app_settings: Settings = settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app_settings.secret_key_is_ephemeral:
            logger.warning(
                "SECRET_KEY is missing or weak: using a random key for this process only. Tokens will not "
                "survive a restart or work across workers. Set SECRET_KEY (ENVIRONMENT=production refuses this)."
            )
        app.state.engine = create_app_engine(
            app_settings.async_database_url,
            pool_size=app_settings.DATABASE_POOL_SIZE,
            max_overflow=app_settings.DATABASE_MAX_OVERFLOW,
        )
        # Everything built so far (routes, schemas, statements) lives as long as the
        # process: keep it out of the garbage collector's full passes, which otherwise
        # walk it all and showed up as the feed's p99 under load.
        gc.freeze()
        yield
        await app.state.engine.dispose()

    telemetry: TelemetryConfig | None = None
    if not app_settings.TELEMETRY_ENABLED:
        telemetry = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(title="Agora", version="1.0.0", description=DESCRIPTION, lifespan=lifespan, telemetry=telemetry)
    if app_settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=app_settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DBAPIError, database_unavailable)
    app.add_exception_handler(PoolTimeoutError, database_unavailable)
    app.add_exception_handler(DatabaseUnavailable, database_unavailable)
    for module in (posts, users, auth, votes):
        app.include_router(module.router)
    return app


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
