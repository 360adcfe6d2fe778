"""Schemathesis against the app's own OpenAPI document: generated valid and invalid requests for every operation.

Requests go in-process through the suite's `client` (the same app, event loop and test database as every
other test), as an account registered and logged in through the API. Five checks judge every response:
no 5xx, a documented status code, a body matching the documented schema, invalid input refused (4xx) and
valid input not refused with 400/422. The published document must state the rules app/schemas.py
enforces (`describe_real_rules` spells them out, and a test checks it changes nothing); two mismatches no
JSON Schema can express are excused one response at a time (`whole_float_refused`, `unknown_cursor`).

The run is bounded and reproducible: a fixed seed, derandomized, few examples per operation on top of
Schemathesis' deterministic coverage cases (boundaries, missing and mistyped fields). A longer exploration,
with a new seed each time:

    SCHEMATHESIS_MAX_EXAMPLES=500 SCHEMATHESIS_SEED=$RANDOM .venv/bin/python -m pytest -q tests/test_schemathesis.py

The number of requests sent is printed in the summary at the end of the run.
"""

import copy
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2 as httpx
import pytest
import requests
import schemathesis
from conftest import Account
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.schemas import EMAIL_MAX_LENGTH, INVISIBLE, VoteIn, email_address
from app.main import app

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20260522"))

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        # Derandomized and without Hypothesis' example database: the same requests on every run and machine.
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    }
)


# --- the rules the document does not state yet ----------------------------------
#
# What app/schemas.py validates beyond its JSON Schema. Each fix below is the JSON Schema the model should
# produce (the report proposes the Field changes); it is applied here only where the document still lacks it,
# so it becomes a no-op once app/schemas.py says it itself.

# Exactly the characters str.isspace() accepts, spelled the same for Python, ECMA-262 and Rust regexes.
SPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# StorableStr: no NUL (lone surrogates cannot travel in UTF-8 JSON at all).
STORABLE_PATTERN = r"^[^\x00]*$"
# Title and Content: storable, and not blank (white space and invisible characters do not count).
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{SPACE}{INVISIBLE}][^\x00]*$"
# PhoneNumber: 7 to 15 digits, optionally after a +, with spaces, dots, dashes and parentheses anywhere.
PHONE_PATTERN = rf"^[{SPACE}().-]*\+?(?:[{SPACE}().-]*[0-9]){{7,15}}[{SPACE}().-]*$"


def _string_branch(node: dict[str, Any]) -> dict[str, Any]:
    """The string schema of a property, whether or not it is wrapped in anyOf [string, null]."""
    if "anyOf" in node:
        (string,) = [branch for branch in node["anyOf"] if branch.get("type") == "string"]
        return cast(dict[str, Any], string)
    return node


def describe_real_rules(document: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    models = document["components"]["schemas"]

    # FastAPI passes the document through its OpenAPI model, which types minimum and maximum as float:
    # VoteIn.post_id's maximum 2**63-1 comes out as 9.223372036854776e18, which is 2**63. The model's own.
    if models["VoteIn"] != VoteIn.model_json_schema():
        models["VoteIn"] = VoteIn.model_json_schema()

    def add_pattern(model: str, prop: str, pattern: str) -> None:
        _string_branch(models[model]["properties"][prop]).setdefault("pattern", pattern)

    for model in ("PostCreate", "PostReplace", "PostPatch"):
        add_pattern(model, "title", NOT_BLANK_PATTERN)
        add_pattern(model, "content", NOT_BLANK_PATTERN)
    add_pattern("UserCreate", "password", STORABLE_PATTERN)
    add_pattern("UserCreate", "phone_number", PHONE_PATTERN)
    for prop in ("username", "password"):
        add_pattern("LoginForm", prop, STORABLE_PATTERN)
    for parameter in document["paths"]["/posts/"]["get"]["parameters"]:
        if parameter["name"] == "search":
            parameter["schema"].setdefault("pattern", STORABLE_PATTERN)
    # PATCH: a field may be left out, but not sent as null.
    for prop, node in models["PostPatch"]["properties"].items():
        if "anyOf" in node:
            (branch,) = [b for b in node["anyOf"] if b.get("type") != "null"]
            models["PostPatch"]["properties"][prop] = {"title": node.get("title"), **branch}
    return document


def email_accepted(address: str) -> bool:
    try:
        email_address(address)
    except ValueError:
        return False
    return len(address) <= EMAIL_MAX_LENGTH


# The one rule JSON Schema cannot carry: which addresses email-validator takes (IDNA, special-use domains,
# lengths after normalisation). Valid addresses are drawn from those it accepts.
schemathesis.openapi.format("email", st.emails().filter(email_accepted))

DOCUMENT = describe_real_rules(app.openapi())
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


# --- what was sent ---------------------------------------------------------------


@dataclass
class Tally:
    """Requests sent, by operation and answer."""

    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    modes: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.modes.values())

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.total:
            return
        terminalreporter.section("schemathesis")
        terminalreporter.write_line(
            f"{self.total} requests ({', '.join(f'{n} {mode}' for mode, n in sorted(self.modes.items()))}) "
            f"over {len(self.statuses)} operations; seed {SEED}, max_examples {MAX_EXAMPLES}"
        )
        for label, statuses in sorted(self.statuses.items()):
            answers = ", ".join(f"{status} x{n}" for status, n in sorted(statuses.items()))
            terminalreporter.write_line(f"  {label}: {answers}")


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def _report_requests(request: pytest.FixtureRequest) -> None:
    if not request.config.pluginmanager.is_registered(TALLY):
        request.config.pluginmanager.register(TALLY, "agora-schemathesis-tally")


# --- rows for generated requests to find ----------------------------------------


@dataclass
class Known:
    """The caller, and rows that exist: random ids almost never do, so valid requests are aimed at these."""

    caller: Account
    own_post_ids: list[int]
    other_post_ids: list[int]  # someone else's: published (403 to edit), then a draft (404)
    user_ids: list[int]
    turns: int = 0
    choices_made: int = 0

    def replace_deleted_post(self, client: TestClient) -> None:
        """Keep a post of the caller's for the next DELETE (or edit) to find."""
        body = {"title": "Seen by the fuzzer", "content": "Some content"}
        response = client.post("/posts/", json=body, headers=self.caller.headers)
        assert response.status_code == 201, response.text
        self.own_post_ids.append(response.json()["id"])

    def renew_caller(self, client: TestClient, *, password: str | None = None, deleted: bool = False) -> None:
        """After the caller's token was revoked (a logout, a password change) or its account deleted: a token
        that works again, for the requests still to come. A deleted caller is replaced by a new account."""
        caller = self.caller
        if deleted:
            email = f"renewed{len(self.user_ids)}@example.com"
            response = client.post("/users/", json={"email": email, "password": caller.password})
            assert response.status_code == 201, response.text
            caller = Account(response.json()["id"], email, caller.password, "")
            self.user_ids.append(caller.id)
        password = password if password is not None else caller.password
        response = client.post("/login", data={"username": caller.email, "password": password})
        assert response.status_code == 200, response.text
        self.caller = Account(caller.id, caller.email, password, response.json()["access_token"])

    def take_turn(self) -> bool:
        """Three turns in four: the fourth id stays as generated, and must answer 404 (or 422)."""
        self.turns += 1
        return self.turns % 4 != 0

    def next_choice(self, choices: list[Any]) -> Any:
        """The rows in turn: deterministic, like the rest of the run."""
        self.choices_made += 1
        return choices[self.choices_made % len(choices)]


@pytest.fixture
def known(client: TestClient, make_account: Callable[..., Account]) -> Known:
    """Two accounts with a published post and a draft each; the caller has voted on both published posts."""
    caller, other = make_account(), make_account()
    post_ids: dict[int, list[int]] = {caller.id: [], other.id: []}
    for author in (caller, other):
        for published in (True, False):
            body = {"title": "Seen by the fuzzer", "content": "Some content", "published": published}
            response = client.post("/posts/", json=body, headers=author.headers)
            assert response.status_code == 201, response.text
            post_ids[author.id].append(response.json()["id"])
    for post_id in (post_ids[caller.id][0], post_ids[other.id][0]):
        # So that a vote taken back (dir 0) can succeed as well as a vote cast (dir 1).
        response = client.post("/vote/", json={"post_id": post_id, "dir": 1}, headers=caller.headers)
        assert response.status_code == 201, response.text
    return Known(caller, post_ids[caller.id], post_ids[other.id], [caller.id, other.id])


def aim_at_known_rows(case: schemathesis.Case[Any], known: Known) -> None:
    """Swap generated ids for ones that exist in three of four requests (and a login for a real one).

    Only a valid part is aimed, and never the part a coverage case is about (its boundaries, its missing
    fields): the request stays as valid or invalid as generated, but it now gets past the lookups, so an
    invalid body meets the body's validation instead of a 404.
    """
    meta = case.meta
    if meta is None:
        return
    subject = meta.phase.data.parameter_location if meta.phase.name == "coverage" else None
    # Mostly the caller's own posts (which it may edit and delete), sometimes someone else's (403, or 404 for a
    # draft); votes go to the posts the caller can see.
    post_ids = [*known.own_post_ids, *known.own_post_ids, *known.other_post_ids]
    visible_post_ids = [*known.own_post_ids, known.other_post_ids[0]]
    for location, key, choices in (
        (ParameterLocation.PATH, "post_id", post_ids),
        (ParameterLocation.PATH, "user_id", known.user_ids),
        (ParameterLocation.QUERY, "before_id", post_ids),
        (ParameterLocation.BODY, "post_id", visible_post_ids),
    ):
        container = case.get_container(location)
        component = meta.components.get(location)
        if (
            isinstance(container, Mapping)
            and key in container
            and component is not None
            and component.mode.is_positive
            and location != subject
            and known.take_turn()
        ):
            cast(dict[str, Any], container)[key] = known.next_choice(choices)
    if case.path == "/login" and meta.generation.mode.is_positive and subject is None and known.take_turn():
        cast(dict[str, Any], case.body).update(username=known.caller.email, password=known.caller.password)
    # Confirmations of the caller's password: the right one in three of four valid requests.
    for method, path, key in (("PUT", "/users/me/password", "current_password"), ("DELETE", "/users/me", "password")):
        if (
            case.method.upper() == method
            and case.path == path
            and isinstance(case.body, dict)
            and meta.generation.mode.is_positive
            and subject is None
            and known.take_turn()
        ):
            case.body[key] = known.caller.password


def send(client: TestClient, case: schemathesis.Case[Any], headers: dict[str, str]) -> httpx.Response:
    """The request exactly as Schemathesis would put it on the wire, sent through the suite's client."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url), headers=headers)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=dict(kwargs["headers"]),
        params=kwargs.get("params"),
        data=kwargs.get("data"),
        json=kwargs.get("json"),
        files=kwargs.get("files"),
        cookies=kwargs.get("cookies"),
    ).prepare()
    assert prepared.method is not None and prepared.url is not None
    headers = {
        name: value if isinstance(value, str) else value.decode("latin-1") for name, value in prepared.headers.items()
    }
    body = prepared.body
    assert body is None or isinstance(body, str | bytes), type(body)  # requests prepares whole bodies here
    return client.request(prepared.method, prepared.url, headers=headers, content=body)


def whole_float_refused(case: schemathesis.Case[Any], response: httpx.Response) -> bool:
    """A 422 only for integers spelled with a fraction (`2.0`), where the API takes `2` alone.

    JSON Schema (2020-12) counts 2.0 as an integer, so Schemathesis sends it in valid bodies; the API's
    StrictInt fields refuse it on purpose (tests/test_votes.py). No schema keyword can say "not 2.0".
    """
    if response.status_code != 422 or not isinstance(case.body, dict):
        return False
    errors = response.json()["detail"]
    return all(
        error["type"] == "int_type"
        and len(error["loc"]) == 2
        and error["loc"][0] == "body"
        and isinstance(value := case.body.get(error["loc"][1]), float)
        and value.is_integer()
        for error in errors
    )


def unknown_cursor(response: httpx.Response) -> bool:
    """A 422 for a `before_id` within the schema's range that names no post the caller can see."""
    if response.status_code != 422:
        return False
    errors = response.json()["detail"]
    return len(errors) == 1 and errors[0]["loc"] == ["query", "before_id"] and errors[0]["msg"].startswith("no post")


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_api_conforms_to_its_schema(case: schemathesis.Case[Any], client: TestClient, known: Known) -> None:
    aim_at_known_rows(case, known)
    response = send(client, case, known.caller.headers)

    TALLY.modes[case.meta.generation.mode.value if case.meta else "explicit"] += 1
    TALLY.statuses[case.operation.label][response.status_code] += 1
    if case.operation.label == "POST /posts/" and response.status_code == 201:
        known.own_post_ids.append(response.json()["id"])
    if case.operation.label == "DELETE /posts/{post_id}" and response.status_code == 204:
        known.replace_deleted_post(client)
    # These end the token (or the account) that every request of the run is sent with.
    if response.status_code == 204 and case.operation.label in ("POST /logout", "POST /users/me/logout-all"):
        known.renew_caller(client)
    if response.status_code == 204 and case.operation.label == "PUT /users/me/password":
        known.renew_caller(client, password=cast(dict[str, Any], case.body)["new_password"])
    if response.status_code == 204 and case.operation.label == "DELETE /users/me":
        known.renew_caller(client, deleted=True)

    excluded: list[CheckFunction] = []
    if unknown_cursor(response):
        # Whether a cursor exists is state, which no schema can describe: that 422 is documented in words.
        excluded.append(positive_data_acceptance)
    if whole_float_refused(case, response):
        excluded.append(positive_data_acceptance)
    case.validate_response(response, checks=CHECKS, excluded_checks=excluded)


def test_every_operation_was_exercised_and_succeeded(request: pytest.FixtureRequest) -> None:
    """Guards the test above: every documented operation got requests, and at least one of them worked."""
    operations = {result.ok().label for result in schema.get_all_operations()}  # type: ignore[union-attr]
    selected = [
        item
        for item in request.session.items
        if getattr(item, "originalname", None) == test_the_api_conforms_to_its_schema.__name__
    ]
    if len(selected) < len(operations):
        pytest.skip("only some operations were selected")
    assert set(TALLY.statuses) == operations
    never_succeeded = {label for label, statuses in TALLY.statuses.items() if not any(200 <= s < 300 for s in statuses)}
    assert never_succeeded == set()


def test_the_published_document_states_these_rules_itself() -> None:
    published = app.openapi()
    assert describe_real_rules(published) == published
