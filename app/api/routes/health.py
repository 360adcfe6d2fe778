"""Health checks for load balancers and orchestrators."""

from typing import Any

from fastapi import Request, status
from fastapi.responses import JSONResponse

from app.api.deps import DatabaseDep
from app.api.routing import SlashAgnosticRouter
from app.db import statements
from app.db.errors import DatabaseUnavailable

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
    """The database answers and its schema is at the newest revision; 503 with the reason otherwise."""
    expected = request.app.state.head_revision
    try:
        migrated = (await database.fetch(statements.ALEMBIC_TABLE_EXISTS[database.dialect]))[0]["present"]
        current = [row["version_num"] for row in await database.fetch(statements.SCHEMA_REVISIONS)] if migrated else []
    except DatabaseUnavailable as exc:
        detail = f"database unreachable ({type(exc.__cause__ or exc).__name__})"
        return JSONResponse({"status": "unavailable", "detail": detail}, status.HTTP_503_SERVICE_UNAVAILABLE)
    if current != [expected]:
        detail = (
            f"database schema at {', '.join(current) or 'no revision'}, expected {expected}: run alembic upgrade head"
        )
        return JSONResponse({"status": "unavailable", "detail": detail}, status.HTTP_503_SERVICE_UNAVAILABLE)
    return JSONResponse({"status": "ok", "revision": expected})
