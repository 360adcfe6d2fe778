"""Every error's HTTP answer, in one table, installed on the app by `install_error_handlers`.

Database errors arrive already classified (app/db/errors.py: driver exception → outcome);
domain errors name what went wrong (app/domain/errors.py). Each gets one status code:

| exception | status | headers |
|---|---|---|
| `NotAuthenticated` | 401 | `WWW-Authenticate: Bearer` |
| `Forbidden` | 403 | |
| `NotFound` | 404 | |
| `Conflict`, `DatabaseConflict` | 409 | |
| `InvalidParameter`, `RequestValidationError` | 422 | |
| `DatabaseUnavailable` | 503 | `Retry-After: 1` |
| `SearchTimedOut` (a `DatabaseUnavailable`) | 503, saying the search was stopped and why | `Retry-After: 1` |

A search stopped by SEARCH_TIMEOUT_MS is a 503 like every other statement the database
did not finish in time: the same search may well finish on a less busy database, so it is
not the request's fault (4xx); the detail says what to search for instead.
"""

import logging
from dataclasses import dataclass, field

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.db.backends import SearchTimedOut
from app.db.errors import DatabaseConflict, DatabaseUnavailable
from app.domain.errors import Conflict, DomainError, Forbidden, InvalidParameter, NotAuthenticated, NotFound

logger = logging.getLogger("agora")


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    detail: str | None = None  # None: the exception's own detail


HTTP_ANSWERS: dict[type[Exception], HttpAnswer] = {
    NotAuthenticated: HttpAnswer(status.HTTP_401_UNAUTHORIZED, {"WWW-Authenticate": "Bearer"}),
    Forbidden: HttpAnswer(status.HTTP_403_FORBIDDEN),
    NotFound: HttpAnswer(status.HTTP_404_NOT_FOUND),
    Conflict: HttpAnswer(status.HTTP_409_CONFLICT),
    DatabaseConflict: HttpAnswer(status.HTTP_409_CONFLICT, detail="The request conflicts with the current state"),
    DatabaseUnavailable: HttpAnswer(
        status.HTTP_503_SERVICE_UNAVAILABLE, {"Retry-After": "1"}, "The database is unavailable; try again shortly"
    ),
    # The exception's own message: how long the search ran, and what to search for instead.
    SearchTimedOut: HttpAnswer(status.HTTP_503_SERVICE_UNAVAILABLE, {"Retry-After": "1"}),
}


async def answer(_request: Request, exc: Exception) -> JSONResponse:
    """The table's answer for `exc` (its class, or the nearest base class in the table)."""
    for kind in type(exc).__mro__:
        http = HTTP_ANSWERS.get(kind)
        if http is not None:
            break
    else:  # pragma: no cover - handlers are installed only for the table's classes
        raise exc
    if isinstance(exc, SearchTimedOut):
        # A search the indexes could not narrow, not a database in trouble: no traceback, one line.
        logger.warning("search timeout: stopped after SEARCH_TIMEOUT_MS (%d ms)", exc.timeout_ms)
    elif isinstance(exc, DatabaseUnavailable):
        logger.error("database unavailable: %s", exc, exc_info=exc)
    elif isinstance(exc, DatabaseConflict):
        logger.warning("database conflict no endpoint expected: %s", exc, exc_info=exc)
    detail = http.detail if http.detail is not None else (exc.detail if isinstance(exc, DomainError) else str(exc))
    return JSONResponse({"detail": detail}, status_code=http.status_code, headers=http.headers or None)


async def invalid_parameter(_request: Request, exc: Exception) -> JSONResponse:
    """422 in the same shape as FastAPI's own validation errors."""
    assert isinstance(exc, InvalidParameter)
    errors = [{"loc": list(exc.location), "msg": exc.detail, "type": "value_error"}]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


# FastAPI's own answer to a body it cannot parse (not UTF-8, nested too deep, a broken form).
UNPARSEABLE_BODY = "There was an error parsing the body"


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with where and why, but without echoing the input (it may be megabytes, or not valid text).

    A body that is not JSON at all (truncated, trailing garbage) is 400, the same answer as
    for a body that is not UTF-8 or nests too deep: one code for "the body is not JSON".
    """
    assert isinstance(exc, RequestValidationError)
    if any(error["type"] == "json_invalid" for error in exc.errors()):
        return JSONResponse({"detail": UNPARSEABLE_BODY}, status_code=status.HTTP_400_BAD_REQUEST)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def install_error_handlers(app: FastAPI) -> None:
    for kind in HTTP_ANSWERS:
        app.add_exception_handler(kind, answer)
    app.add_exception_handler(InvalidParameter, invalid_parameter)
    app.add_exception_handler(RequestValidationError, validation_error)
