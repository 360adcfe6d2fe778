"""HTTP methods: HEAD wherever GET works, and a 405 whose `Allow` lists every method of the path.

Starlette answers a method a path does not serve with the methods of the first route whose path
matched (`PUT /posts/` got `Allow: GET`, although POST works there too), and FastAPI's routes do
not answer HEAD at all. Two small pieces fix that without touching the routes or the OpenAPI
document:

- `HeadAsGet`, a pure-ASGI layer that runs a HEAD request as the GET it stands for and drops the
  body bytes: same status and headers (Content-Length included), same dependencies (a protected
  route stays protected). Any other request costs one comparison.
- `add_method_fallbacks(app)`, called once every route is registered: one route per path, after
  all the others and out of the schema, that matches any method and answers 405 with `Allow` =
  the methods every route matching the requested path serves. Real routes come first in the
  list, so a method that works still reaches its endpoint; a path no route knows stays a 404.
"""

import re

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.responses import JSONResponse
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """HEAD is GET without the body (RFC 9110 §9.3.2): run it as GET, send only the head.

    The scope is copied, not changed: the layers outside (access log, CORS) and the server still
    see HEAD, and a server that skips HEAD bodies by itself (uvicorn) keeps doing so. Only the
    route routing chose is copied back, afterwards.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "HEAD":  # lifespan and websocket scopes have no method
            await self.app(scope, receive, send)
            return

        async def send_head_only(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
            elif not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        get = {**scope, "method": "GET"}
        try:
            await self.app(get, receive, send_head_only)
        finally:
            # What routing found, for the metrics outside (their route label: app/http/metrics.py).
            for key in ("route", "endpoint"):
                if key in get:
                    scope[key] = get[key]


def route_path(scope: Scope) -> str:
    """The path routes match against: the request's, without the app's `root_path` (as Starlette's Route does)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    return path[len(root_path) :] if root_path and path.startswith(root_path) else path


class MethodNotAllowed:
    """The endpoint of a path's fallback route: 405, `Allow` naming every method the path serves.

    The methods are collected when a 405 is answered (the only time this runs), from every route
    whose path matches the request's: `/users/me` is served by `/users/me` and `/users/{user_id}`.
    """

    def __init__(self, served: list[tuple[re.Pattern[str], frozenset[str]]]) -> None:
        self.served = served

    def allowed(self, path: str) -> str:
        methods: set[str] = set()
        for regex, route_methods in self.served:
            if regex.match(path):
                methods |= route_methods
        if "GET" in methods:
            methods.add("HEAD")  # HeadAsGet
        return ", ".join(sorted(methods))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allow = self.allowed(route_path(scope))
        response = JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow})
        await response(scope, receive, send)


def add_method_fallbacks(app: FastAPI) -> None:
    """After every route of `app` is registered: one fallback per path answering 405 with a full `Allow`.

    Call it last: a route registered afterwards would sit behind the fallbacks of its path.
    Mounts are left alone (StaticFiles answers its own 405 with `Allow: GET, HEAD`).
    """
    served: list[tuple[re.Pattern[str], frozenset[str]]] = []
    paths: dict[str, None] = {}  # in route order, once each
    for route in iter_route_contexts(app.routes):
        path, methods = route.path, route.methods
        if path is None or not methods or isinstance(route.endpoint, MethodNotAllowed):
            continue
        served.append((compile_path(path)[0], frozenset(methods)))
        paths[path] = None
    fallback = MethodNotAllowed(served)
    for path in paths:
        app.router.routes.append(Route(path, fallback, include_in_schema=False))
