"""The application: wiring only. `create_app(settings)` builds everything from one `Settings`."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from anyio.to_thread import run_sync
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.telemetry import TelemetryConfig

from app.api.errors import install_error_handlers
from app.api.routes import auth, health, metrics, posts, users, votes
from app.api.schemas import VoteIn
from app.config import Settings
from app.db.backends import Database, open_database
from app.db.errors import DatabaseUnavailable
from app.db.migrations import head_revision
from app.domain import accounts
from app.domain.posts import Feed, fill_missing_search_columns
from app.domain.ratelimit import RateLimits
from app.http.admission import Admission
from app.http.docs import mount_docs
from app.http.logs import configure_logging
from app.http.methods import HeadAsGet, add_method_fallbacks
from app.http.metrics import RequestMetrics, worker_metrics
from app.http.middleware import RequestContextMiddleware
from app.security import COURSE_BCRYPT_ROUNDS, Passwords, Tokens

logger = logging.getLogger("agora")

DESCRIPTION = """
A social-posts API: register, log in (OAuth2 password flow, JWT bearer tokens),
write posts and vote on them. Use **Authorize** with your email as the username.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API, configured by `settings` (read from the environment when not given) and nothing else.

    What requests use lives on `app.state`: `settings`, `passwords` and `tokens`
    (app/security.py), `feed` (app/domain/posts.py), `rate_limits`, and, while the app
    runs, `database` (app/db/backends.py) and `head_revision`.
    """
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()  # here, so that every worker process logs the same way
        if settings.secret_key_is_ephemeral:
            logger.warning(
                "SECRET_KEY is missing or weak: using a random key for this process only. Tokens will not "
                "survive a restart or work across workers. Set SECRET_KEY (ENVIRONMENT=production refuses this)."
            )
        app.state.database = await open_database(
            settings.async_database_url,
            pool_size=settings.DATABASE_POOL_SIZE,
            pool_timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
            connect_timeout=settings.DATABASE_CONNECT_TIMEOUT_SECONDS,
            statement_timeout_ms=settings.DATABASE_STATEMENT_TIMEOUT_MS,
            search_timeout_ms=settings.SEARCH_TIMEOUT_MS,
            write_reserve=settings.DATABASE_WRITE_RESERVE,
            behind_pgbouncer=settings.DATABASE_BEHIND_PGBOUNCER,
            read_urls=settings.read_database_urls,
            max_lag_seconds=settings.DATABASE_READ_MAX_LAG_SECONDS,
            write_marks_url=shared_storage_url(settings),
        )
        app.state.head_revision = head_revision()
        await calibrate_login_floor(app.state.passwords, app.state.database)
        filling = asyncio.create_task(fill_search_columns_in_background(app.state.database))
        # Everything built so far (routes, schemas, statements) lives as long as the
        # process: keep it out of the garbage collector's full passes, which otherwise
        # walk it all and showed up as the feed's p99 under load.
        gc.freeze()
        # Counts this worker, and has its pools reported at each scrape (app/http/metrics.py).
        async with worker_metrics(app.state.database.report_pool_sizes if settings.METRICS_ENABLED else None):
            yield
        # Stopped, and waited for, before its database closes under it (a statement cut off
        # mid-way on a closed connection left SQLite's worker thread hanging at shutdown).
        filling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await filling
        if app.state.rate_limits is not None:
            app.state.rate_limits.storage.close()  # Redis connections, when RATE_LIMIT_STORAGE_URL is one
        await app.state.database.close()

    telemetry: TelemetryConfig | None = None
    if not settings.TELEMETRY_ENABLED:
        telemetry = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        title="Agora",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=telemetry,
        docs_url=None,  # served by mount_docs (app/http/docs.py), from local files instead of a CDN
        redoc_url=None,  # ReDoc loads its script and fonts from a CDN: Swagger UI at /docs is the one docs page
        redirect_slashes=False,  # both forms of every path are routes; Starlette's redirect trusts the Host header
    )
    app.state.settings = settings
    app.state.passwords = Passwords.from_settings(settings)
    app.state.tokens = Tokens.from_settings(settings)
    app.state.feed = Feed()
    app.state.rate_limits = rate_limits(settings)
    # Middleware added last runs first: request context (and body limit), then CORS, then HEAD as GET.
    app.add_middleware(HeadAsGet)
    if settings.CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Link"],  # the feed's next page (a browser hides other headers from scripts)
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.MAX_REQUEST_BODY_BYTES,
        access_log=settings.ACCESS_LOG_ENABLED,
        admission=Admission(settings.MAX_REQUESTS_IN_FLIGHT, settings.ADMISSION_WAIT_SECONDS)
        if settings.MAX_REQUESTS_IN_FLIGHT
        else None,
        metrics=RequestMetrics() if settings.METRICS_ENABLED else None,
    )
    install_error_handlers(app)
    # Routing tries the routers in this order: the busiest paths (feed, votes) first.
    for module in (posts, votes, users, auth, health):
        app.include_router(module.router)
    if settings.METRICS_ENABLED:
        app.include_router(metrics.router)  # GET /metrics, out of the OpenAPI document
    mount_docs(app)
    add_method_fallbacks(app)  # last: 405 with every method of the path
    app.openapi = exact_integer_bounds(app.openapi)  # type: ignore[method-assign]
    return app


async def calibrate_login_floor(passwords: Passwords, database: Database) -> None:
    """Measure the failed-login floor now, not during the first failed login (app/security.py).

    It covers bcrypt only when some accounts still hold bcrypt hashes; with the database
    down at start-up, it assumes the course app's cost.
    """
    try:
        rounds = await accounts.stored_bcrypt_rounds(database)
    except DatabaseUnavailable:
        rounds = COURSE_BCRYPT_ROUNDS
    await run_sync(passwords.calibrate, rounds)


async def fill_search_columns_in_background(database: Database) -> None:
    """Fill in the search columns of posts an older Agora wrote during a deploy (usually none), in the background."""
    try:
        if filled := await fill_missing_search_columns(database):
            logger.info("filled in the search columns of %d posts written without them", filled)
    except DatabaseUnavailable:
        logger.warning("could not fill in missing search columns: the database is unavailable; the next start will")
    except Exception:  # a task's failure is otherwise silent
        logger.exception("could not fill in missing search columns; the next start will try again")


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


def shared_storage_url(settings: Settings) -> str | None:
    """RATE_LIMIT_STORAGE_URL when it is Redis: where standbys' read-your-writes marks are shared too."""
    url = settings.RATE_LIMIT_STORAGE_URL
    return url if url.startswith(("redis://", "rediss://")) else None


def rate_limits(settings: Settings) -> RateLimits | None:
    if not settings.RATE_LIMIT_ENABLED:
        return None
    return RateLimits.build(
        settings.RATE_LIMIT_STORAGE_URL,
        settings.RATE_LIMIT_WINDOW_SECONDS,
        failed_logins_per_address=settings.RATE_LIMIT_FAILED_LOGINS_PER_ADDRESS,
        failed_logins_per_account=settings.RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT,
        registrations_per_address=settings.RATE_LIMIT_REGISTRATIONS_PER_ADDRESS,
    )


app = create_app()
