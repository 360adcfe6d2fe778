"""HTTP methods and paths, for every route of the app (found from the app itself, no hand-kept list).

- Both forms of every path (with and without the trailing slash) are served, and nothing anywhere answers
  with a redirect: Starlette's slash redirects were built from the Host header.
- A method a path does not serve gets 405 with `Allow` naming exactly the methods that work there.
- HEAD works wherever GET does: the same status and headers, no body; protected routes stay protected.
- OPTIONS is CORSMiddleware's when CORS is configured (preflights), a 405 with `Allow` otherwise.
"""

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx2 as httpx
import pytest
from conftest import TEST_DATABASE_URL, Account
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

from app.api.routing import slash_twin
from app.config import Settings
from app.http.methods import HeadAsGet, MethodNotAllowed
from app.main import create_app

# Every method a client might try; TRACE is served nowhere, so every path has one to refuse.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
# A file under the docs' static mount, standing in for the mount's path.
MOUNT_SAMPLES = {"/docs/static": "/docs/static/swagger-ui.css"}
# Answered with the 404 of an unknown path outside METRICS_ALLOWED_NETWORKS, where the test
# client ("testclient", not an address) is; each scrape differs from the last. Both forms from
# an allowed address: tests/test_metrics.py.
NOT_FOR_THE_TEST_CLIENT = {"/metrics"}


@dataclass(frozen=True)
class Served:
    """One path of the app as routed (template) and as requested (ids filled in), with its declared methods."""

    template: str
    path: str
    methods: frozenset[str]


@dataclass
class World:
    account: Account
    post_id: int

    @property
    def ids(self) -> dict[str, int]:
        return {"post_id": self.post_id, "user_id": self.account.id}


@pytest.fixture
def world(client: TestClient, make_account: Callable[..., Account]) -> World:
    account = make_account()
    post = client.post("/posts/", json={"title": "hello", "content": "c"}, headers=account.headers)
    assert post.status_code == 201, post.text
    return World(account, post.json()["id"])


def served_paths(app: FastAPI, ids: dict[str, int]) -> list[Served]:
    """Every route and mount of `app` (fallbacks aside), with its path parameters filled from `ids`."""
    served = []
    for route in iter_route_contexts(app.routes):
        if isinstance(route.endpoint, MethodNotAllowed):
            continue
        assert route.path is not None, route
        if isinstance(route.original_route, Mount):
            served.append(Served(route.path, MOUNT_SAMPLES[route.path], frozenset({"GET", "HEAD"})))
            continue
        assert route.methods, f"{route.path}: a route without methods"
        path = re.sub(r"{(\w+)}", lambda name: str(ids[name[1]]), route.path)
        served.append(Served(route.path, path, frozenset(route.methods)))
    return served


def both_forms(app: FastAPI, ids: dict[str, int]) -> list[str]:
    """Each requested path of the app once, in both slash forms (a mount's files only as they are named)."""
    paths: dict[str, None] = {}
    for served in served_paths(app, ids):
        paths[served.path] = None
        if served.template not in MOUNT_SAMPLES:
            paths[slash_twin(served.path)] = None
    return list(paths)


def test_the_enumeration_covers_the_app(client: TestClient, world: World) -> None:
    """Guards the tests below: the routes they walk are the app's, twins and docs included."""
    paths = both_forms(client.app, world.ids)  # type: ignore[arg-type]
    for path in ("/health", "/health/", "/ready/", "/docs/", "/openapi.json/", "/posts", f"/posts/{world.post_id}/"):
        assert path in paths
    assert len(paths) >= 25  # 12 paths in both forms, and a file of the docs assets


# --- slashes and redirects ------------------------------------------------------------


def test_both_slash_forms_of_every_route_reach_it(client: TestClient, world: World) -> None:
    """Each declared method, on each form of each path, gets past routing (no token: 401 is the route's own)."""
    wrong = {}
    for served in served_paths(client.app, world.ids):  # type: ignore[arg-type]
        if served.template.rstrip("/") in NOT_FOR_THE_TEST_CLIENT:
            continue
        forms = [served.path] if served.template in MOUNT_SAMPLES else [served.path, slash_twin(served.path)]
        for path in forms:
            for method in sorted(served.methods):
                response = client.request(method, path, follow_redirects=False)
                if response.status_code in (301, 302, 303, 307, 308, 404, 405):
                    wrong[f"{method} {path}"] = f"{response.status_code} {response.headers.get('location')}"
    assert wrong == {}


def test_both_slash_forms_of_every_read_answer_the_same(client: TestClient, world: World) -> None:
    wrong = {}
    for served in served_paths(client.app, world.ids):  # type: ignore[arg-type]
        if "GET" not in served.methods or served.template.rstrip("/") in {*MOUNT_SAMPLES, *NOT_FOR_THE_TEST_CLIENT}:
            continue
        get = [
            client.get(p, headers=world.account.headers, follow_redirects=False)
            for p in (served.path, slash_twin(served.path))
        ]
        if [r.status_code for r in get] != [200, 200] or get[0].content != get[1].content:
            wrong[served.path] = [r.status_code for r in get]
    assert wrong == {}


@pytest.mark.parametrize("host", ["testserver", "evil.example"])
def test_no_response_is_a_redirect(client: TestClient, world: World, host: str) -> None:
    """Every method on both forms of every path, with a foreign Host too: no 3xx, no Location built from it."""
    redirects = {}
    for path in both_forms(client.app, world.ids):  # type: ignore[arg-type]
        for method in METHODS:
            response = client.request(method, path, headers={"Host": host}, follow_redirects=False)
            if 300 <= response.status_code < 400 or "location" in response.headers:
                redirects[f"{method} {path}"] = f"{response.status_code} {response.headers.get('location')}"
    assert redirects == {}


@pytest.mark.parametrize("method", METHODS)
def test_unknown_paths_stay_a_json_404(client: TestClient, world: World, method: str) -> None:
    paths = ["/", "//", "/nope", "/nope/", "/health//", "//health", "/posts//", "/posts/1/votes", "/docs/static"]
    paths += ["/openapi.json.bak", "/users/me/posts", "/vote/1", "/login/extra"]
    responses = {p: client.request(method, p, headers=world.account.headers, follow_redirects=False) for p in paths}
    assert {p: r.status_code for p, r in responses.items() if r.status_code != 404} == {}
    for response in responses.values():
        if method == "HEAD":
            assert response.content == b""
        else:
            assert response.json() == {"detail": "Not Found"}


# --- 405 and Allow --------------------------------------------------------------------


def test_a_405_allows_exactly_the_methods_that_work_on_the_path(client: TestClient, world: World) -> None:
    """Every method on both forms of every path (no token, no body: nothing changes). A method works when it is
    not refused with 405; each 405 must name exactly those, sorted, as a JSON error."""
    wrong: dict[str, str] = {}
    refused = 0
    for path in both_forms(client.app, world.ids):  # type: ignore[arg-type]
        responses = {method: client.request(method, path, follow_redirects=False) for method in METHODS}
        works = ", ".join(sorted(method for method, response in responses.items() if response.status_code != 405))
        for method, response in responses.items():
            if response.status_code != 405:
                continue
            refused += 1
            if response.headers.get("allow") != works:
                wrong[f"{method} {path}"] = f"Allow: {response.headers.get('allow')}, works: {works}"
            elif method != "HEAD" and response.json() != {"detail": "Method Not Allowed"}:
                wrong[f"{method} {path}"] = response.text
    assert wrong == {}
    assert refused >= len(both_forms(client.app, world.ids))  # type: ignore[arg-type]  # TRACE at least


def test_the_allowed_methods_include_every_declared_one(client: TestClient, world: World) -> None:
    for served in served_paths(client.app, world.ids):  # type: ignore[arg-type]
        allow = client.request("TRACE", served.path).headers["allow"].split(", ")
        expected = served.methods | ({"HEAD"} if "GET" in served.methods else set())
        assert expected <= set(allow), (served.path, allow)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/posts/", "GET, HEAD, POST"),
        ("DELETE", "/posts", "GET, HEAD, POST"),
        ("POST", "/posts/5", "DELETE, GET, HEAD, PATCH, PUT"),
        ("POST", "/posts/5/", "DELETE, GET, HEAD, PATCH, PUT"),
        ("PUT", "/users/me", "DELETE, GET, HEAD, PATCH"),
        ("GET", "/logout", "POST"),
        ("GET", "/users/me/password", "PUT"),
        ("DELETE", "/users/", "POST"),
        ("GET", "/vote/", "POST"),
        ("GET", "/login", "POST"),
        ("POST", "/health/", "GET, HEAD"),
        ("POST", "/openapi.json/", "GET, HEAD"),
        ("DELETE", "/docs/", "GET, HEAD"),
        ("PUT", "/docs/static/swagger-ui.css", "GET, HEAD"),
    ],
)
def test_a_405_names_every_method_of_the_path(
    client: TestClient, world: World, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path, headers=world.account.headers)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.json() == {"detail": "Method Not Allowed"}
    assert response.headers["x-content-type-options"] == "nosniff"  # the usual headers, like any answer


def test_the_fallbacks_stay_out_of_the_openapi_document(client: TestClient) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    document = client.get("/openapi.json").json()
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    expected = {
        (method.lower(), route.path)
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    assert documented == expected
    assert client.get("/openapi.json/").json() == document


# --- HEAD -----------------------------------------------------------------------------

HEAD_PATHS = ["/health", "/ready", "/docs", "/openapi.json", "/posts/", "/posts/{post_id}", "/users/me"]


def without_request_id(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "x-request-id"}


@pytest.mark.parametrize("twin", [False, True], ids=["as-named", "slash-toggled"])
@pytest.mark.parametrize("template", HEAD_PATHS)
def test_head_is_get_without_the_body(client: TestClient, world: World, template: str, twin: bool) -> None:
    path = template.format(**world.ids)
    path = slash_twin(path) if twin else path
    get = client.get(path, headers=world.account.headers)
    head = client.head(path, headers=world.account.headers)
    assert get.status_code == 200, get.text
    assert head.status_code == get.status_code
    assert without_request_id(head) == without_request_id(get)
    assert head.headers["content-length"] == str(len(get.content)) != "0"
    assert head.content == b""


@pytest.mark.parametrize("path", ["/posts/", "/posts", "/posts/{post_id}", "/users/me", "/users/{user_id}/"])
def test_head_keeps_protected_routes_protected(client: TestClient, world: World, path: str) -> None:
    path = path.format(**world.ids)
    get, head = client.get(path), client.head(path)
    assert (head.status_code, get.status_code) == (401, 401)
    assert head.headers["www-authenticate"] == "Bearer"
    assert without_request_id(head) == without_request_id(get)
    assert head.content == b""


def test_head_where_get_is_not_served(client: TestClient, world: World) -> None:
    refused = client.head("/vote/", headers=world.account.headers)
    assert (refused.status_code, refused.headers["allow"], refused.content) == (405, "POST", b"")
    unknown = client.head("/nope", headers=world.account.headers)
    assert (unknown.status_code, unknown.content) == (404, b"")
    missing = client.head("/posts/999999", headers=world.account.headers)
    assert (missing.status_code, missing.content) == (404, b"")


def test_head_is_logged_as_head(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="agora.access"):
        client.head("/health")
    (record,) = [r for r in caplog.records if r.name == "agora.access"]
    assert (record.method, record.path, record.status) == ("HEAD", "/health", 200)  # type: ignore[attr-defined]


def test_head_over_a_real_connection(live_server: str) -> None:
    """Through uvicorn: the head of GET, no body bytes on the wire, and the connection stays usable."""
    with httpx.Client(base_url=live_server) as http:
        head = http.head("/health")
        get = http.get("/health")
        again = http.head("/openapi.json")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert get.json() == {"status": "ok"}
    assert (again.status_code, again.content) == (200, b"")


def test_other_methods_pass_head_as_get_untouched() -> None:
    """The wrapper's whole cost for anything but HEAD: one comparison, then the same scope, receive and send."""
    seen: list[tuple[Scope, Receive, Send]] = []
    sent: list[Message] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
            await send({"type": "http.response.body", "body": b"hel", "more_body": True})
            await send({"type": "http.response.body", "body": b"lo"})

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        sent.append(message)

    wrapper = HeadAsGet(inner)
    for scope in ({"type": "http", "method": "GET"}, {"type": "http", "method": "POST"}, {"type": "lifespan"}):
        asyncio.run(wrapper(scope, receive, send))
        assert seen.pop() == (scope, receive, send)
        assert seen == []
    assert b"".join(m.get("body", b"") for m in sent) == b"hellohello"

    sent.clear()
    head = {"type": "http", "method": "HEAD"}
    asyncio.run(wrapper(head, receive, send))
    ((inner_scope, inner_receive, _),) = seen
    assert inner_scope == {"type": "http", "method": "GET"} and inner_receive is receive
    assert head == {"type": "http", "method": "HEAD"}  # the layers outside still see HEAD
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]


# --- OPTIONS --------------------------------------------------------------------------


def test_options_without_cors_is_a_405_naming_the_methods(client: TestClient) -> None:
    for path, allow in [
        ("/posts/", "GET, HEAD, POST"),
        ("/posts/1", "DELETE, GET, HEAD, PATCH, PUT"),
        ("/login", "POST"),
    ]:
        preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
        response = client.options(path, headers=preflight)
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == allow
        assert "access-control-allow-origin" not in response.headers


def test_options_with_cors_answers_preflights_and_405s_the_rest() -> None:
    settings = Settings(DATABASE_URL=TEST_DATABASE_URL, CORS_ORIGINS="https://app.example.com")
    browser_app = TestClient(create_app(settings))  # no lifespan: nothing here reaches the database
    origin = {"Origin": "https://app.example.com"}
    for path, method in [("/posts/", "POST"), ("/posts/1/", "PATCH"), ("/users/me", "GET"), ("/health/", "HEAD")]:
        preflight = browser_app.options(path, headers={**origin, "Access-Control-Request-Method": method})
        assert preflight.status_code == 200, (path, preflight.text)
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    plain = browser_app.options("/posts/", headers=origin)
    assert (plain.status_code, plain.headers["allow"]) == (405, "GET, HEAD, POST")
    refused = browser_app.put("/posts/", headers=origin)
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD, POST")
    assert refused.headers["access-control-allow-origin"] == "https://app.example.com"
    assert json.loads(refused.content) == {"detail": "Method Not Allowed"}
