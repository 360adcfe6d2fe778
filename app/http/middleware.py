"""HTTP hygiene in one pure-ASGI layer: body limit, request ids, security headers, access log, metrics.

The access log's format and handler are in app/http/logs.py.

One middleware rather than three, and no BaseHTTPMiddleware, because every layer
costs something on every request.
"""

import logging
import os
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.admission import Admission
from app.http.logs import request_id_var
from app.http.metrics import RequestMetrics

REQUEST_ID_HEADER = "x-request-id"
# An id a client or proxy sends is kept if it is short and plain; anything else is replaced.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

access_logger = logging.getLogger("agora.access")

# For JSON API responses: nothing may be framed, sniffed, cached or loaded from them.
API_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}
# The interactive docs are an HTML page with scripts and styles of their own.
DOCS_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'"
    ),
}
DOCS_PREFIXES = ("/docs",)
_API_SECURITY_HEADER_NAMES = frozenset(name.encode() for name in API_SECURITY_HEADERS)
_API_SECURITY_HEADERS_RAW = [(name.encode(), value.encode()) for name, value in API_SECURITY_HEADERS.items()]


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Content Too Large")


# Answered whatever the load: a load balancer's liveness probe must not fail because the
# worker is busy (it would restart a healthy worker exactly when it is needed).
ALWAYS_ADMITTED = frozenset({"/health", "/health/"})


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        access_log: bool = True,
        admission: Admission | None = None,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.admission = admission  # load shedding (app/http/admission.py); None: no bound
        self.metrics = metrics  # app/http/metrics.py; None: not recorded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        status = 500  # what the client sees if the app fails before answering
        path: str = scope["path"]
        security_headers = DOCS_SECURITY_HEADERS if path.startswith(DOCS_PREFIXES) else API_SECURITY_HEADERS

        received = 0
        response_started = False

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                if security_headers is API_SECURITY_HEADERS and _API_SECURITY_HEADER_NAMES.isdisjoint(
                    name for name, _ in headers.raw
                ):
                    # The common case, in one step: no header of ours was set by the endpoint.
                    headers.raw.extend(_API_SECURITY_HEADERS_RAW)
                else:
                    for name, value in security_headers.items():
                        headers.setdefault(name, value)
            await send(message)

        admission = self.admission if path not in ALWAYS_ADMITTED else None
        admitted = False
        try:
            if _declared_length(scope) > self.max_body_bytes:
                raise BodyTooLarge
            if admission is not None:
                admitted = await admission.enter()
                if not admitted:
                    busy = {"detail": "The server is busy; try again shortly"}
                    await JSONResponse(busy, status_code=503, headers={"Retry-After": "1"})(
                        scope, receive, send_with_headers
                    )
                    return
            await self.app(scope, receive_within_limit, send_with_headers)
        except BodyTooLarge:
            # Usually FastAPI has already answered (it is an HTTPException); this covers
            # a declared length over the limit and bodies read outside a route.
            if response_started:
                raise
            response = JSONResponse({"detail": "Content Too Large"}, status_code=413)
            await response(scope, receive, send_with_headers)
        finally:
            if admitted and admission is not None:
                admission.leave()
            elapsed = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.record(scope, status, elapsed)
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
                # A record made directly: Logger.info would also look up the caller's frame
                # (findCaller) on every request, for a field the format never shows.
                record = access_logger.makeRecord(
                    access_logger.name,
                    logging.INFO,
                    __file__,
                    0,
                    "%s %s %d",
                    (scope["method"], path, status),
                    None,
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": (scope.get("client") or ("-",))[0],
                    },
                )
                access_logger.handle(record)
            request_id_var.reset(token)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID
