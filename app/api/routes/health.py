"""Health checks for load balancers and orchestrators."""

from typing import Any

from fastapi import Request, status
from fastapi.responses import JSONResponse

from app.api.deps import DatabaseDep
from app.api.routing import SlashAgnosticRouter
from app.db import statements
from app.db.errors import DatabaseUnavailable
from app.domain.ratelimit import RateLimits

router = SlashAgnosticRouter(tags=["health"])  # /health and /health/, /ready and /ready/

HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"description": "Not ready: the database is unreachable or not at the newest revision"}
}


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    """The process is up and serving; the database is not consulted."""
    return {"status": "ok"}


@router.get("/ready", summary="Readiness", responses=HEALTH_RESPONSES)
async def ready(request: Request, database: DatabaseDep) -> JSONResponse:
    """The database answers and its schema is at the newest revision; 503 with the reason otherwise.

    With standbys (DATABASE_READ_URL), `databases` says how each one is: "primary" ok or
    down, each "replica-N" ok, lagging or down. Only the primary decides readiness: a
    standby that cannot serve leaves its reads to the primary.

    `rate_limits` says "ok", "off" or "degraded (why)": with RATE_LIMIT_STORAGE_URL's Redis
    unreachable, logins and registrations go on unlimited (they fail open), `status` says
    "degraded", and the answer stays 200: every host shares that Redis, and a load balancer
    must not take them all out of service for it.
    """
    expected = request.app.state.head_revision
    standbys = database.replica_states()
    try:
        migrated = (await database.fetch(statements.ALEMBIC_TABLE_EXISTS[database.dialect]))[0]["present"]
        current = [row["version_num"] for row in await database.fetch(statements.SCHEMA_REVISIONS)] if migrated else []
    except DatabaseUnavailable as exc:
        detail = f"database unreachable ({type(exc.__cause__ or exc).__name__})"
        body = _with_databases({"status": "unavailable", "detail": detail}, "down", standbys)
        return JSONResponse(body, status.HTTP_503_SERVICE_UNAVAILABLE)
    if current != [expected]:
        detail = (
            f"database schema at {', '.join(current) or 'no revision'}, expected {expected}: run alembic upgrade head"
        )
        body = _with_databases({"status": "unavailable", "detail": detail}, "ok", standbys)
        return JSONResponse(body, status.HTTP_503_SERVICE_UNAVAILABLE)
    body = _with_databases({"status": "ok", "revision": expected}, "ok", standbys)
    return JSONResponse(await _with_rate_limits(body, request.app.state.rate_limits))


def _with_databases(body: dict[str, Any], primary: str, standbys: dict[str, str]) -> dict[str, Any]:
    if standbys:
        body["databases"] = {"primary": primary, **standbys}
    return body


async def _with_rate_limits(body: dict[str, Any], limits: RateLimits | None) -> dict[str, Any]:
    problem = await limits.storage.problem() if limits is not None else None
    body["rate_limits"] = "off" if limits is None else f"degraded ({problem})" if problem else "ok"
    if problem:
        body["status"] = "degraded"
    return body
