"""Every protected route keeps the token rules, found from the app's own routes (no hand-kept list).

A route is protected when its dependencies read the bearer token (`oauth2_scheme`); a new
endpoint is covered here as soon as it is added. Each one is called with a body good
enough to get past validation, on a post and an account that exist, so only the token
can explain a refusal.
"""

import re
import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
import pytest
from conftest import IS_POSTGRESQL, PASSWORD, Account, misanswered
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from app.api.deps import oauth2_scheme
from app.api.routing import slash_twin
from app.api.schemas import AccountDeletion, PasswordChange, PostCreate, PostPatch, PostReplace, UserPatch, VoteIn
from app.config import Settings
from app.db import statements
from app.db.backends import Database, Prepared
from app.db.grams import grams
from app.domain.viewer import Viewer

T = TypeVar("T")
Call = tuple[str, str, dict[str, Any] | None]

# The only routes anyone may call without a token. Adding one here is a decision: make it.
PUBLIC_ROUTES = {("POST", "/users/"), ("POST", "/login"), ("GET", "/health"), ("GET", "/ready")}
# Routes left out of the OpenAPI document that no bearer token protects either (besides the
# other form of each public path). Each is guarded its own way; adding one is a decision too.
UNDOCUMENTED_PUBLIC_ROUTES = {
    # Prometheus' scrape: only from METRICS_ALLOWED_NETWORKS (loopback and private ranges by
    # default), with METRICS_TOKEN when set; 404 to anyone else (app/api/routes/metrics.py).
    ("GET", "/metrics"),
}

# A valid body for each request model a protected route reads, given the ids in play.
SAMPLE_BODIES: dict[type[Any], Callable[[dict[str, int]], dict[str, Any]]] = {
    PostCreate: lambda ids: {"title": "t", "content": "c"},
    PostReplace: lambda ids: {"title": "t", "content": "c"},
    PostPatch: lambda ids: {"title": "t"},
    VoteIn: lambda ids: {"post_id": ids["post_id"], "dir": 1},
    UserPatch: lambda ids: {"phone_number": "+15550001111"},
    # The password of every account make_account registers (conftest.PASSWORD).
    PasswordChange: lambda ids: {"current_password": PASSWORD, "new_password": "a brand new password"},
    AccountDeletion: lambda ids: {"password": PASSWORD},
}


def _reads_token(dependant: Dependant) -> bool:
    return any(d.call is oauth2_scheme or _reads_token(d) for d in dependant.dependencies)


def api_routes(app: FastAPI, *, documented_only: bool = False) -> list[RouteContext]:
    """The app's endpoints as it serves them (routers included, prefixes applied).

    Every path also answers with its trailing slash toggled (app/api/routing.py): those
    twins are routes of their own, left out of the documentation.
    """
    return [
        route
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute) and (route.include_in_schema or not documented_only)
    ]


def protected_routes(app: FastAPI) -> list[RouteContext]:
    return [route for route in api_routes(app) if _reads_token(route.dependant)]


def requests_for(app: FastAPI, ids: dict[str, int]) -> list[Call]:
    """(method, path, JSON body) for every protected route, aimed at the objects in `ids`."""
    calls: list[Call] = []
    for route in protected_routes(app):
        assert route.path is not None and route.methods is not None
        path = re.sub(r"{(\w+)}", lambda name: str(ids[name[1]]), route.path)
        body = None
        if route.dependant.body_params:
            (param,) = route.dependant.body_params
            model = param.field_info.annotation
            assert model in SAMPLE_BODIES, f"{route.path}: add a sample body for {model} to SAMPLE_BODIES"
            body = SAMPLE_BODIES[model](ids)
        calls.extend((method, path, body) for method in sorted(route.methods))
    return calls


def not_unauthorized(
    client: TestClient, calls: list[tuple[str, str, dict[str, Any] | None]], **kw: Any
) -> dict[str, str]:
    responses = {f"{m} {p}": client.request(m, p, json=b, **kw) for m, p, b in calls}
    wrong = misanswered(401, responses)
    for label, response in responses.items():
        if response.status_code == 401 and response.headers.get("www-authenticate") != "Bearer":
            wrong[label] = "401 without WWW-Authenticate: Bearer"
    return wrong


@pytest.fixture
def targets(client: TestClient, make_account: Callable[..., Account]) -> dict[str, int]:
    """A published post by someone else, and that someone's id."""
    author = make_account()
    post = client.post("/posts/", json={"title": "visible", "content": "c"}, headers=author.headers)
    return {"post_id": post.json()["id"], "user_id": author.id}


def test_every_route_is_protected_or_public_on_purpose(client: TestClient) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    unprotected = {
        (method, route.path)
        for route in api_routes(app, documented_only=True)
        if not _reads_token(route.dependant)
        for method in route.methods or ()
    }
    assert unprotected == PUBLIC_ROUTES
    assert len(protected_routes(app)) >= 2 * 8  # the enumeration itself works (both forms of each path)


def test_every_route_out_of_the_documentation_is_protected_or_public_on_purpose(client: TestClient) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    hidden_unprotected = {
        (method, route.path)
        for route in api_routes(app)
        if not route.include_in_schema and not _reads_token(route.dependant)
        for method in route.methods or ()
    }
    expected = {(method, slash_twin(path)) for method, path in PUBLIC_ROUTES}
    expected |= {(method, form) for method, path in UNDOCUMENTED_PUBLIC_ROUTES for form in (path, slash_twin(path))}
    assert hidden_unprotected == expected


def test_every_protected_route_needs_a_token(client: TestClient, targets: dict[str, int]) -> None:
    assert not_unauthorized(client, requests_for(client.app, targets)) == {}  # type: ignore[arg-type]


def test_every_protected_route_refuses_an_expired_token(
    client: TestClient, make_account: Callable[..., Account], targets: dict[str, int]
) -> None:
    account = make_account()
    past = datetime.now(UTC) - timedelta(hours=1)
    claims = {
        "sub": str(account.id),
        "iat": past - timedelta(minutes=30),
        "exp": past,
        "gen": 0,
        "jti": secrets.token_urlsafe(16),
    }
    token = jwt.encode(claims, Settings().SECRET_KEY, algorithm="HS256")
    calls = requests_for(client.app, targets)  # type: ignore[arg-type]
    assert not_unauthorized(client, calls, headers={"Authorization": f"Bearer {token}"}) == {}


def test_every_protected_route_refuses_the_token_of_a_deleted_account(
    client: TestClient, make_account: Callable[..., Account], targets: dict[str, int], sql: Connection
) -> None:
    account = make_account()
    assert client.get("/users/me", headers=account.headers).status_code == 200
    sql.execute(text("DELETE FROM users WHERE id = :id"), {"id": account.id})
    calls = requests_for(client.app, targets)  # type: ignore[arg-type]
    calls += [("GET", "/posts/?search=visible", None), ("GET", f"/posts/?before_id={targets['post_id']}", None)]
    assert not_unauthorized(client, calls, headers=account.headers) == {}


# --- the statements behind the rule ------------------------------------------------


def viewer_statements() -> dict[str, Prepared]:
    return {name: p for name, p in statements.named_statements().items() if p.proves_viewer}


@pytest.mark.parametrize("why", ["no account", "older generation", "logged out"])
def test_statements_that_prove_the_viewer_find_nothing_and_change_nothing_unless_the_token_counts(
    client: TestClient, make_account: Callable[..., Account], targets: dict[str, int], sql: Connection, why: str
) -> None:
    """Run every `proves_viewer` statement for a token that no longer counts: no row, and nothing written.

    The account is gone, or its token generation has moved on (a password change), or the
    token's id is among the revoked ones (a logout).
    """
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    voter = make_account()
    client.post("/vote/", json={"post_id": targets["post_id"], "dir": 1}, headers=voter.headers)
    jti = secrets.token_urlsafe(16)
    viewer = {"viewer_id": voter.id, "viewer_generation": 0, "viewer_jti": jti}
    if why == "no account":
        viewer["viewer_id"] = voter.id + 1000
    elif why == "older generation":
        sql.execute(text("UPDATE users SET token_generation = 1 WHERE id = :id"), {"id": voter.id})
    else:
        sql.execute(text("INSERT INTO revoked_tokens (jti, expires_at) VALUES (:jti, 4102444800)"), {"jti": jti})
    state = (
        "SELECT (SELECT count(*) FROM posts), (SELECT count(*) FROM votes), (SELECT count(*) FROM users), "
        "(SELECT count(*) FROM revoked_tokens), password, phone_number, token_generation FROM users WHERE id = :id"
    )
    before = tuple(sql.execute(text(state), {"id": voter.id}).one())
    values = {
        "post_id": targets["post_id"],
        "owner_id": targets["user_id"],
        "limit": 10,
        "skip": 0,
        "pattern": "%visible%",
        "grams": grams("visible")[:3],
        "walk_grams": grams("visible")[:1],
        "scan": 5,
        "second_rate": 256,
        "quiet_sample": 64,
        "title_grams": grams("t"),
        "before_id": targets["post_id"] + 1,
        "title": "t",
        "title_folded": "t",
        "content": "c",
        "published": True,
        "phone_number": "+15550001111",
        "new_hash": "!",
        "expires_at": 4102444800,
    }
    found = {}
    for name, prepared in viewer_statements().items():
        if name.startswith("GRAMS_") and not IS_POSTGRESQL:
            continue  # its column exists on PostgreSQL only (the app never runs it on SQLite)
        params = {key: values[key] for key in prepared.parameter_names if key not in viewer}
        if not IS_POSTGRESQL:
            params.pop("title_grams", None)  # PostgreSQL's statements only
        found[name] = run(client, _fetch(database, prepared, {**params, **viewer}))
    assert all(rows == [] for rows in found.values()), found
    assert tuple(sql.execute(text(state), {"id": voter.id}).one()) == before
    assert len(found) >= 14


def test_every_statement_that_proves_the_viewer_checks_the_whole_token() -> None:
    """A statement that checked the account alone would let a revoked token through."""
    assert viewer_statements()
    for name, prepared in viewer_statements().items():
        assert {"viewer_id", "viewer_generation", "viewer_jti"} <= set(prepared.parameter_names), name


def run(client: TestClient, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the app's event loop (where its connection pool lives)."""
    assert client.portal is not None

    async def call() -> T:
        return await coroutine

    return client.portal.call(call)


async def _fetch(database: Database, prepared: Prepared, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in await database.fetch(prepared, params)]


def test_a_viewer_runs_only_statements_that_prove_the_account(client: TestClient) -> None:
    database = client.app.state.database  # type: ignore[attr-defined]
    viewer = Viewer(1, database, generation=0, jti=secrets.token_urlsafe(16), expires_at=2**32)
    with pytest.raises(TypeError, match="proves_viewer"):
        run(client, viewer.fetch(statements.POST_OWNERSHIP, {"post_id": 1}))
