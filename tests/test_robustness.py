"""Bad input of every kind: a 4xx with a JSON `detail`, never a 5xx, and nothing stored."""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import pytest
from conftest import PASSWORD, Account
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Row, text

MEGABYTE = 1_000_000


@dataclass
class World:
    """An account with one published post and its own vote on it: something for bad requests to damage."""

    account: Account
    post_id: int

    @property
    def headers(self) -> dict[str, str]:
        return self.account.headers


@pytest.fixture
def world(client: TestClient, make_account: Callable[..., Account]) -> World:
    account = make_account()
    created = client.post("/posts/", json={"title": "t", "content": "c"}, headers=account.headers)
    assert created.status_code == 201, created.text
    post_id = created.json()["id"]
    assert client.post("/vote/", json={"post_id": post_id, "dir": 1}, headers=account.headers).status_code == 201
    return World(account, post_id)


def snapshot(sql: Connection) -> tuple[Sequence[Row[Any]], ...]:
    """Every row the API can write, to compare before and after a bad request."""
    return (
        sql.execute(text("SELECT id, email, password, phone_number FROM users ORDER BY id")).all(),
        sql.execute(text("SELECT id, title, content, published, owner_id FROM posts ORDER BY id")).all(),
        sql.execute(text("SELECT user_id, post_id FROM votes ORDER BY user_id, post_id")).all(),
    )


def assert_client_error(response: httpx.Response, *allowed: int) -> None:
    """A 4xx (one of `allowed`, if given) answered as JSON {"detail": ...}."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if allowed:
        assert response.status_code in allowed, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"detail"}, body


def refusal_problem(response: httpx.Response, *allowed: int) -> str | None:
    """What is wrong with `response` as a refusal (see assert_client_error), or None."""
    try:
        assert_client_error(response, *allowed)
    except AssertionError as error:
        return str(error)
    return None


def misanswered(responses: dict[str, httpx.Response], *allowed: int) -> dict[str, str]:
    """The responses, by label, that are not proper refusals."""
    return {label: problem for label, response in responses.items() if (problem := refusal_problem(response, *allowed))}


# The JSON endpoints, each with a body it accepts and the string fields in it.
@dataclass
class Endpoint:
    method: str
    path: str
    body: dict[str, Any]
    text_fields: tuple[str, ...]

    def url(self, world: World) -> str:
        return self.path.format(post_id=world.post_id)

    def valid_body(self, world: World) -> dict[str, Any]:
        return {key: world.post_id if value == "{post_id}" else value for key, value in self.body.items()}


ENDPOINTS = [
    Endpoint(
        "POST",
        "/users/",
        {"email": "new@example.com", "password": PASSWORD, "phone_number": "555 123 4567"},
        ("email", "password", "phone_number"),
    ),
    Endpoint("POST", "/posts/", {"title": "new", "content": "new"}, ("title", "content")),
    Endpoint("PUT", "/posts/{post_id}", {"title": "new", "content": "new", "published": False}, ("title", "content")),
    Endpoint("PATCH", "/posts/{post_id}", {"title": "new", "content": "new"}, ("title", "content")),
    Endpoint("POST", "/vote/", {"post_id": "{post_id}", "dir": 0}, ()),
]
ENDPOINT_IDS = [f"{e.method} {e.path}" for e in ENDPOINTS]
TEXT_FIELDS = [(endpoint, field) for endpoint in ENDPOINTS for field in endpoint.text_fields]
TEXT_FIELD_IDS = [f"{e.method} {e.path} {field}" for e, field in TEXT_FIELDS]


def send_json(
    client: TestClient, world: World, endpoint: Endpoint, content: bytes, content_type: str | None = "application/json"
) -> httpx.Response:
    headers = dict(world.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.request(endpoint.method, endpoint.url(world), content=content, headers=headers)


def test_the_valid_bodies_are_accepted(client: TestClient, world: World) -> None:
    """Control: each endpoint takes its valid body, so the refusals below are about the damage alone."""
    for endpoint in ENDPOINTS:
        body = json.dumps(endpoint.valid_body(world)).encode()
        response = send_json(client, world, endpoint, body)
        assert response.status_code in (200, 201), (endpoint.method, endpoint.path, response.text)


# --- bodies that are not a JSON object -------------------------------------------

NOT_JSON_OBJECTS = {
    "empty": b"",
    "plain text": b"hello",
    "truncated": b'{"title": "t"',
    "trailing comma": b'{"title": "t", "content": "c",}',
    "single quotes": b"{'title': 't', 'content': 'c'}",
    "null": b"null",
    "array": b'[{"title": "t", "content": "c"}]',
    "string": b'"title"',
    "number": b"42",
    "boolean": b"true",
    "invalid utf-8": b'{"title": "\xff\xfe\xfd", "content": "\xc3\x28"}',
    "raw control bytes": b"\x00\x01\x02\x03",
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "deeply nested object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "megabyte of garbage": b"\xff" * MEGABYTE,
}


# Bodies that are not JSON at all, however they fail to parse: one answer, 400.
UNPARSEABLE = [
    "plain text",
    "truncated",
    "trailing comma",
    "single quotes",
    "invalid utf-8",
    "raw control bytes",
    "deeply nested",
]
UNPARSEABLE_EXTRA = {
    "trailing garbage": b'{"title": "t", "content": "c"} garbage',
    "deeply nested object, under the size limit": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
}


@pytest.mark.parametrize("name", [*UNPARSEABLE, *UNPARSEABLE_EXTRA])
def test_a_body_that_is_not_json_is_always_400(client: TestClient, sql: Connection, world: World, name: str) -> None:
    content = NOT_JSON_OBJECTS.get(name) or UNPARSEABLE_EXTRA[name]
    before = snapshot(sql)
    responses = {
        f"{endpoint.method} {endpoint.path}": send_json(client, world, endpoint, content) for endpoint in ENDPOINTS
    }
    assert misanswered(responses, 400) == {}
    assert {r.json()["detail"] for r in responses.values()} == {"There was an error parsing the body"}
    assert snapshot(sql) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
def test_a_field_the_api_does_not_know_is_422_and_changes_nothing(
    client: TestClient, sql: Connection, world: World, endpoint: Endpoint
) -> None:
    before = snapshot(sql)
    body = {**endpoint.valid_body(world), "bogus": 1}
    response = client.request(endpoint.method, endpoint.url(world), json=body, headers=world.headers)
    assert_client_error(response, 422)
    assert response.json()["detail"][0]["loc"] == ["body", "bogus"]
    assert snapshot(sql) == before


def test_a_login_form_with_a_field_the_api_does_not_know_is_422(client: TestClient, world: World) -> None:
    form = {"username": world.account.email, "password": world.account.password}
    assert_client_error(client.post("/login", data={**form, "bogus": "1"}), 422)
    # The password grant's optional client credentials are not unknown (RFC 6749, 4.3.2 and 2.3.1).
    assert client.post("/login", data={**form, "grant_type": "password", "client_id": "app"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/users/", {"email": "new@example.com", "password": "short"}, "at least 8 characters"),
        ("/users/", {"email": "new@example.com", "password": "p" * 129}, "at most 128 characters"),
        ("/posts/", {"title": "t" * 301, "content": "c"}, "at most 300 characters"),
        ("/posts/", {"title": "", "content": "c"}, "at least 1 character"),
    ],
)
def test_length_errors_count_characters(
    client: TestClient, world: World, path: str, body: dict[str, Any], expected: str
) -> None:
    response = client.post(path, json=body, headers=world.headers)
    assert_client_error(response, 422)
    assert expected in response.json()["detail"][0]["msg"], response.json()


@pytest.mark.parametrize("content", NOT_JSON_OBJECTS.values(), ids=NOT_JSON_OBJECTS.keys())
def test_a_body_that_is_not_a_json_object_is_4xx(
    client: TestClient, sql: Connection, world: World, content: bytes
) -> None:
    before = snapshot(sql)
    responses = {
        f"{endpoint.method} {endpoint.path}": send_json(client, world, endpoint, content) for endpoint in ENDPOINTS
    }
    assert misanswered(responses) == {}
    assert snapshot(sql) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
def test_json_sent_with_the_wrong_content_type_is_4xx(
    client: TestClient, sql: Connection, world: World, endpoint: Endpoint
) -> None:
    before = snapshot(sql)
    body = json.dumps(endpoint.valid_body(world)).encode()
    content_types = [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ]
    responses = {str(kind): send_json(client, world, endpoint, body, kind) for kind in content_types}
    assert misanswered(responses) == {}
    assert snapshot(sql) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
def test_a_form_instead_of_json_is_4xx(client: TestClient, sql: Connection, world: World, endpoint: Endpoint) -> None:
    before = snapshot(sql)
    response = client.request(
        endpoint.method, endpoint.url(world), data=endpoint.valid_body(world), headers=world.headers
    )
    assert_client_error(response)
    assert snapshot(sql) == before


# --- text no database can store, or that is absurdly large ------------------------

BAD_TEXT = {
    "nul in the middle": "ab\x00cd",
    "nul at the end": "abcd\x00",
    "only nul": "\x00",
    "lone high surrogate": "\ud800",
    "lone low surrogate": "\udfff",
    "surrogate inside text": "abc\udc00def",
    "reversed pair": "\udc00\ud800",
}


def with_text(endpoint: Endpoint, world: World, field: str, value: str) -> bytes:
    body = endpoint.valid_body(world)
    if field == "email":
        value = f"ada{value}@example.com" if len(value) < 100 else value + "@example.com"
    elif field == "phone_number":
        value = f"555123{value}4567" if len(value) < 100 else value
    else:
        value = f"text {value} text" if len(value) < 100 else value
    body[field] = value
    # ensure_ascii writes lone surrogates as JSON escapes ("\ud800"), as a client would have to.
    return json.dumps(body, ensure_ascii=True).encode()


@pytest.mark.parametrize(("endpoint", "field"), TEXT_FIELDS, ids=TEXT_FIELD_IDS)
def test_nul_bytes_and_lone_surrogates_in_any_text_field_are_422(
    client: TestClient, sql: Connection, world: World, endpoint: Endpoint, field: str
) -> None:
    before = snapshot(sql)
    responses = {
        name: send_json(client, world, endpoint, with_text(endpoint, world, field, value))
        for name, value in BAD_TEXT.items()
    }
    assert misanswered(responses, 422) == {}
    assert snapshot(sql) == before


INVALID_UTF8 = {
    "stray continuation byte": b"\x80",
    "0xff": b"\xff\xfe",
    "truncated sequence": b"\xe2\x82",
    "overlong slash": b"\xc0\xaf",
    "encoded surrogate (CESU-8)": b"\xed\xa0\x80",
    "beyond U+10FFFF": b"\xf4\x90\x80\x80",
}


@pytest.mark.parametrize(("endpoint", "field"), TEXT_FIELDS, ids=TEXT_FIELD_IDS)
def test_invalid_utf_8_bytes_in_any_text_field_are_4xx(
    client: TestClient, sql: Connection, world: World, endpoint: Endpoint, field: str
) -> None:
    before = snapshot(sql)
    template = with_text(endpoint, world, field, "RAW-BYTES-HERE")
    responses = {
        name: send_json(client, world, endpoint, template.replace(b"RAW-BYTES-HERE", raw))
        for name, raw in INVALID_UTF8.items()
    }
    assert misanswered(responses, 400, 422) == {}
    assert snapshot(sql) == before


def test_a_valid_surrogate_pair_is_just_an_emoji(client: TestClient, world: World) -> None:
    """Control for the lone surrogates: the same escape syntax, correctly paired, is accepted."""
    for endpoint, field in TEXT_FIELDS:
        if field in ("email", "phone_number"):
            continue  # no emoji in those
        response = send_json(client, world, endpoint, with_text(endpoint, world, field, "\U0001f680"))
        assert response.status_code in (200, 201), (endpoint.method, endpoint.path, response.text)
        if field != "password":
            assert "\U0001f680" in response.json()[field]


@pytest.mark.parametrize(("endpoint", "field"), TEXT_FIELDS, ids=TEXT_FIELD_IDS)
def test_a_megabyte_in_any_text_field_is_4xx(
    client: TestClient, sql: Connection, world: World, endpoint: Endpoint, field: str
) -> None:
    before = snapshot(sql)
    value = "7" * MEGABYTE if field == "phone_number" else "x" * MEGABYTE
    assert_client_error(send_json(client, world, endpoint, with_text(endpoint, world, field, value)), 413, 422)
    assert snapshot(sql) == before


def test_login_form_fields_with_nul_bytes_or_a_megabyte_are_4xx(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    account = make_account()
    before = snapshot(sql)
    responses = {}
    for field in ("username", "password"):
        for name, value in {"nul": "ab\x00cd", "only nul": "\x00", "megabyte": "x" * MEGABYTE}.items():
            form = {"username": account.email, "password": account.password, field: value}
            responses[f"{name} in {field}"] = client.post("/login", data=form)
    assert misanswered(responses, 413, 422) == {}
    assert snapshot(sql) == before


def test_undecodable_login_forms_are_4xx(client: TestClient, sql: Connection) -> None:
    before = snapshot(sql)
    forms = [
        b"username=%ED%A0%80&password=%ED%A0%80%ED%A0%80%ED%A0%80",  # surrogates encoded as UTF-8 (CESU)
        b"username=\xff\xfe&password=\xc3\x28\xc3\x28\xc3\x28",  # raw invalid UTF-8
        b"username=%FF%FE&password=%C3%28%C3%28%C3%28",
        b"username&password",
        b"&&&===&&&",
    ]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    responses = {repr(form): client.post("/login", content=form, headers=headers) for form in forms}
    assert misanswered(responses, 401, 422) == {}
    assert snapshot(sql) == before


@pytest.mark.parametrize("search", ["a\x00b", "\x00", "t\x00" * 20], ids=["nul", "only-nul", "many-nuls"])
def test_a_search_with_nul_bytes_is_422(client: TestClient, world: World, search: str) -> None:
    assert_client_error(client.get("/posts/", params={"search": search}, headers=world.headers), 422)


def test_an_absurdly_long_search_is_4xx(client: TestClient, world: World) -> None:
    # 60 kB: about the longest URL an HTTP client will send at all.
    response = client.get("/posts/", params={"search": "t" * 60_000}, headers=world.headers)
    assert_client_error(response, 414, 422)


def test_a_search_that_is_not_utf_8_is_never_a_5xx(client: TestClient, world: World) -> None:
    """Undecodable bytes reach the application as U+FFFD, an ordinary character: a 4xx or an empty result."""
    for raw_query in ("search=%ED%A0%80", "search=%FF%FE", "search=%C3%28", "search=%", "search=%G0"):
        response = client.get(f"/posts/?{raw_query}", headers=world.headers)
        assert response.status_code < 500, (raw_query, response.text)
        if response.status_code == 200:
            assert response.json() == [], raw_query
        else:
            assert_client_error(response)


# --- numbers -----------------------------------------------------------------------

BAD_PATH_IDS = [
    "0",
    "-1",
    str(2**63),
    str(-(2**63) - 1),
    str(10**30),
    "9" * 400,
    "1e3",
    "0x10",
    "%00",
    "%20",
    "abc",
    "NaN",
    "Infinity",
]
PATH_ROUTES = [
    ("GET", "/posts/{id}", None),
    ("PUT", "/posts/{id}", {"title": "t", "content": "c"}),
    ("PATCH", "/posts/{id}", {"title": "t"}),
    ("DELETE", "/posts/{id}", None),
    ("GET", "/users/{id}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PATH_ROUTES, ids=[f"{m} {p}" for m, p, _ in PATH_ROUTES])
def test_an_id_in_a_path_outside_1_to_2_63_minus_1_is_422(
    client: TestClient, sql: Connection, world: World, method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = snapshot(sql)
    responses = {
        bad_id: client.request(method, path.format(id=bad_id), json=body, headers=world.headers)
        for bad_id in BAD_PATH_IDS
    }
    assert misanswered(responses, 422) == {}
    assert snapshot(sql) == before


@pytest.mark.parametrize(("method", "path", "body"), PATH_ROUTES, ids=[f"{m} {p}" for m, p, _ in PATH_ROUTES])
def test_a_large_but_valid_id_in_a_path_is_404(
    client: TestClient, sql: Connection, world: World, method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = snapshot(sql)
    responses = {
        str(big_id): client.request(method, path.format(id=big_id), json=body, headers=world.headers)
        for big_id in (2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**53 + 1, 2**63 - 1)
    }
    assert misanswered(responses, 404) == {}
    assert snapshot(sql) == before


BAD_PAGING = [
    {"limit": "0"},
    {"limit": "101"},
    {"limit": str(10**30)},
    {"limit": "9" * 5000},
    {"limit": "-" + "9" * 5000},
    {"limit": "1e2"},
    {"limit": "NaN"},
    {"skip": "-1"},
    {"skip": str(2**63)},
    {"skip": str(10**30)},
    {"skip": "9" * 5000},
    {"skip": "inf"},
    {"limit": "\x00"},
    {"skip": "1\x00"},
    {"before_id": "0"},
    {"before_id": "-1"},
    {"before_id": str(2**63)},
    {"before_id": "9" * 5000},
]


def test_large_paging_numbers_are_never_a_5xx(client: TestClient, world: World) -> None:
    """Within the accepted range, however large: a page (maybe empty) or a 4xx, never a crash or an overflow."""
    queries: list[dict[str, int]] = [{"skip": n} for n in (2**31 - 1, 2**31, 2**32 + 1, 2**63 - 1)]
    # The feed also offers keyset paging from a post id (beyond the contract, but a number a client can send).
    queries += [{"before_id": n} for n in (world.post_id, 2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**63 - 1)]
    statuses = {str(query): client.get("/posts/", params=query, headers=world.headers) for query in queries}
    wrong = {
        query: f"{response.status_code} {response.text[:200]}"
        for query, response in statuses.items()
        if not (response.status_code == 200 or refusal_problem(response) is None)
    }
    assert wrong == {}


def test_overflowing_or_out_of_range_paging_is_422(client: TestClient, world: World) -> None:
    responses = {str(query)[:40]: client.get("/posts/", params=query, headers=world.headers) for query in BAD_PAGING}
    assert misanswered(responses, 422) == {}


OVERFLOWING_JSON_NUMBERS = {
    "2**63": str(2**63),
    "10**30": str(10**30),
    "-10**30": str(-(10**30)),
    "5000 digits": "9" * 5000,  # beyond Python's int-parsing limit
    "1e400 (infinite float)": "1e400",
    "-1e400": "-1e400",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "1e3": "1e3",
    "1.0000000000000000001": "1.0000000000000000001",
}


def post_json(client: TestClient, world: World, path: str, fields: dict[str, str]) -> httpx.Response:
    """POST a JSON object whose values are given as raw JSON text (so they can be what json.dumps never writes)."""
    content = ("{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}").encode()
    return client.post(path, content=content, headers={**world.headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("field", ["post_id", "dir"])
def test_overflowing_numbers_in_a_vote_are_4xx(client: TestClient, sql: Connection, world: World, field: str) -> None:
    before = snapshot(sql)
    responses = {
        name: post_json(client, world, "/vote/", {"post_id": str(world.post_id), "dir": "0", field: number})
        for name, number in OVERFLOWING_JSON_NUMBERS.items()
    }
    assert misanswered(responses, 400, 422) == {}
    assert snapshot(sql) == before


@pytest.mark.parametrize("field", ["title", "content", "published"])
def test_numbers_where_text_or_a_boolean_belongs_are_4xx(
    client: TestClient, sql: Connection, world: World, field: str
) -> None:
    before = snapshot(sql)
    responses = {
        name: post_json(
            client, world, "/posts/", {"title": '"t"', "content": '"c"', "published": "true", field: number}
        )
        for name, number in OVERFLOWING_JSON_NUMBERS.items()
    }
    assert misanswered(responses, 400, 422) == {}
    assert snapshot(sql) == before


# --- headers, routes and methods -------------------------------------------------------


def test_a_garbled_authorization_header_is_401(client: TestClient) -> None:
    headers = {
        "latin-1 bytes": b"Bearer \xff\xfe",
        "nul": b"Bearer \x00",
        "utf-8": "Bearer ünïcode".encode(),
        "huge": b"Bearer " + b"a." * 50_000,
        "no scheme": b"\xff",
    }
    responses = {name: client.get("/posts/", headers=[(b"Authorization", value)]) for name, value in headers.items()}
    assert misanswered(responses, 401) == {}
    assert {name: r.headers.get("www-authenticate") for name, r in responses.items()} == dict.fromkeys(
        headers, "Bearer"
    )


def test_an_unknown_route_is_a_json_404(client: TestClient, world: World) -> None:
    paths = ["/", "/nope", "/posts/1/votes", "/users/me/posts", "/vote/1", "/login/extra", "/%00"]
    assert misanswered({path: client.get(path, headers=world.headers) for path in paths}, 404) == {}


def test_a_wrong_method_is_a_json_405(client: TestClient, world: World) -> None:
    calls = [("DELETE", "/posts/"), ("PUT", "/users/me"), ("GET", "/vote/"), ("GET", "/login"), ("PATCH", "/users/")]
    responses = {f"{method} {path}": client.request(method, path, headers=world.headers) for method, path in calls}
    assert misanswered(responses, 405) == {}


def test_the_api_still_works_after_all_that(client: TestClient, world: World) -> None:
    """Bad requests leave no broken connection or poisoned state behind: a burst of them, then a normal call."""
    for content in NOT_JSON_OBJECTS.values():
        assert client.post("/posts/", content=content, headers=world.headers).status_code < 500
    response = client.get(f"/posts/{world.post_id}", headers=world.headers)
    assert response.status_code == 200
    assert response.json()["votes"] == 1


LENIENT_NUMBERS = ["1_0", "+1", "01", " 1", "1 ", "1.0", "1e1", "0x1", "\u0661", "\uff11"]


@pytest.mark.parametrize("spelling", LENIENT_NUMBERS)
def test_only_plain_decimal_digits_are_an_id_or_a_number(client: TestClient, world: World, spelling: str) -> None:
    """Python's int() reads `1_0` as 10 and `+1`, ` 1`, `01` as 1: the API takes only plain digits."""
    quoted = quote(spelling)
    responses = {
        "post": client.get(f"/posts/{quoted}", headers=world.headers),
        "user": client.get(f"/users/{quoted}", headers=world.headers),
        "limit": client.get(f"/posts/?limit={quoted}", headers=world.headers),
        "skip": client.get(f"/posts/?skip={quoted}", headers=world.headers),
        "before_id": client.get(f"/posts/?before_id={quoted}", headers=world.headers),
        "delete": client.delete(f"/posts/{quoted}", headers=world.headers),
    }
    assert misanswered(responses, 422) == {}
    # The plain spelling of the same numbers works.
    assert client.get(f"/posts/{world.post_id}", headers=world.headers).status_code == 200
    assert client.get("/posts/?limit=10&skip=0", headers=world.headers).status_code == 200


INVISIBLE_TEXTS = ["\u200b", "\u200b\u200c\u200d", " \ufeff ", "\u3164", "\u2060\u00ad", "\x01\x02", "\u202e\u202c"]


@pytest.mark.parametrize(
    "invisible", INVISIBLE_TEXTS, ids=[t.encode("unicode_escape").decode() for t in INVISIBLE_TEXTS]
)
def test_a_title_or_content_of_invisible_characters_is_blank(
    client: TestClient, sql: Connection, world: World, invisible: str
) -> None:
    before = snapshot(sql)
    url = f"/posts/{world.post_id}"
    responses = {
        "create title": client.post("/posts/", json={"title": invisible, "content": "c"}, headers=world.headers),
        "create content": client.post("/posts/", json={"title": "t", "content": invisible}, headers=world.headers),
        "replace": client.put(url, json={"title": invisible, "content": "c"}, headers=world.headers),
        "patch": client.patch(url, json={"content": invisible}, headers=world.headers),
    }
    assert misanswered(responses, 422) == {}
    assert snapshot(sql) == before
    visible = client.post("/posts/", json={"title": f"x{invisible}", "content": "c"}, headers=world.headers)
    assert visible.status_code == 201, visible.text


def test_an_email_with_more_than_64_characters_before_the_at_is_422(client: TestClient) -> None:
    too_long = client.post("/users/", json={"email": "a" * 65 + "@example.com", "password": PASSWORD})
    assert_client_error(too_long, 422)
    assert client.post("/users/", json={"email": "a" * 64 + "@example.com", "password": PASSWORD}).status_code == 201
