"""An APIRouter on which every path also answers with the trailing slash toggled.

Clients written for the course API call both `/posts` and `/posts/`; a redirect
would drop the body of a POST in many HTTP clients (and Starlette builds its
redirects from the Host header), so both forms are real routes and the app is
built with `redirect_slashes=False`. Only the canonical form appears in the
OpenAPI schema. Routes added outside such a router (the docs, the OpenAPI
document) add their twin with `slash_twin`.
"""

from typing import Any

import orjson
from fastapi import APIRouter, Response

from app.api.schemas import ErrorOut


def slash_twin(path: str) -> str:
    """`path` with its trailing slash toggled: `/posts/` <-> `/posts`."""
    return path[:-1] if path.endswith("/") else f"{path}/"


class SlashAgnosticRouter(APIRouter):
    def add_api_route(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        if (self.prefix + slash_twin(path)) not in ("", "/"):
            super().add_api_route(slash_twin(path), endpoint, **{**kwargs, "include_in_schema": False})


def responses(
    *codes: int, body: bool = False, database: bool = True, descriptions: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation for the error codes an operation can answer.

    Besides `codes`: an operation that reads a request `body` also answers 400 (a body that is
    not JSON or not UTF-8) and 413 (too large); one that uses the `database` answers 503 while
    the database is unreachable. (422 FastAPI documents by itself on operations with inputs.)
    `descriptions` replaces the usual wording of a code for this operation.
    """
    wording = {
        400: "The body could not be parsed (malformed JSON or form, or not UTF-8)",
        401: "Missing, invalid, expired or revoked token",
        403: "Not your post",
        404: "No such resource (or not visible to you)",
        409: "Conflict with the current state",
        413: "Request body too large",
        429: "Too many attempts",
        503: "The database is unavailable; try again shortly",
    }
    wording |= descriptions or {}
    if body:
        codes = (*codes, 400, 413)
    if database:
        codes = (*codes, 503)
    return {code: {"model": ErrorOut, "description": wording[code]} for code in sorted(set(codes))}


def json_response(content: Any, status_code: int = 200) -> Response:
    """JSON bytes straight from plain data, for the hottest reads.

    The route still declares its `response_model` (for the docs and the schema tests);
    returning a Response skips FastAPI's re-validation of rows we built ourselves.
    Naive datetimes (SQLite) are UTC.
    """
    return Response(orjson.dumps(content, option=orjson.OPT_NAIVE_UTC), status_code, media_type="application/json")
