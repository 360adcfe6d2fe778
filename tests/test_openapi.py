"""The OpenAPI document: every route described, errors documented, and Swagger UI's Authorize working."""

from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import pytest
from conftest import PASSWORD, Account
from fastapi.testclient import TestClient

# The contract's operations: (method, path without trailing slash) -> (success code, error codes it can answer).
OPERATIONS: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("post", "/users"): ("201", {"409", "422"}),
    ("get", "/users/me"): ("200", {"401"}),
    ("get", "/users/{user_id}"): ("200", {"401", "404", "422"}),
    # Issue 16: account self-service and logging out.
    ("patch", "/users/me"): ("200", {"401", "422"}),
    ("put", "/users/me/password"): ("204", {"401", "403", "422", "429"}),
    ("post", "/users/me/logout-all"): ("204", {"401"}),
    ("delete", "/users/me"): ("204", {"401", "403", "422", "429"}),
    ("post", "/logout"): ("204", {"401"}),
    ("post", "/login"): ("200", {"401", "422"}),
    ("get", "/posts"): ("200", {"401", "422"}),
    ("post", "/posts"): ("201", {"401", "422"}),
    ("get", "/posts/{post_id}"): ("200", {"401", "404", "422"}),
    ("put", "/posts/{post_id}"): ("200", {"401", "403", "404", "422"}),
    ("patch", "/posts/{post_id}"): ("200", {"401", "403", "404", "422"}),
    ("delete", "/posts/{post_id}"): ("204", {"401", "403", "404", "422"}),
    ("post", "/vote"): ("201", {"401", "404", "409", "422"}),
    ("get", "/health"): ("200", set()),
    ("get", "/ready"): ("200", {"503"}),
}
PUBLIC_OPERATIONS = {("post", "/users"), ("post", "/login"), ("get", "/health"), ("get", "/ready")}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture
def schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every documented operation, keyed by method and path without its trailing slash."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                key = (method, path.rstrip("/") or "/")
                assert key not in found, f"{method.upper()} {path} is documented twice"
                found[key] = operation
    return found


def resolve_ref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s ("#/components/schemas/X") to the schema they name."""
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node
        target: Any = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def test_every_contract_operation_is_documented_once(schema: dict[str, Any]) -> None:
    assert set(operations(schema)) == set(OPERATIONS)


def test_every_operation_has_tags_and_a_summary(schema: dict[str, Any]) -> None:
    for (method, path), operation in operations(schema).items():
        assert operation.get("tags"), f"{method.upper()} {path} has no tags"
        assert all(isinstance(tag, str) and tag.strip() for tag in operation["tags"])
        assert isinstance(operation.get("summary"), str) and operation["summary"].strip(), (
            f"{method.upper()} {path} has no summary"
        )


def test_the_oauth2_password_scheme_points_at_login(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    oauth2 = [scheme for scheme in schemes.values() if scheme["type"] == "oauth2"]
    assert len(oauth2) == 1
    assert oauth2[0]["flows"]["password"]["tokenUrl"] == "login"


def test_protected_operations_require_the_scheme_and_public_ones_do_not(schema: dict[str, Any]) -> None:
    (scheme_name,) = [name for name, s in schema["components"]["securitySchemes"].items() if s["type"] == "oauth2"]
    for key, operation in operations(schema).items():
        requirements = operation.get("security", [])
        if key in PUBLIC_OPERATIONS:
            assert requirements == [], key
        else:
            assert any(scheme_name in requirement for requirement in requirements), key


def test_success_and_error_codes_are_documented(schema: dict[str, Any]) -> None:
    missing = {}
    for key, operation in operations(schema).items():
        success, errors = OPERATIONS[key]
        documented = set(operation["responses"])
        if not ({success} | errors) <= documented:
            missing[key] = ({success} | errors) - documented
    assert missing == {}


def test_documented_errors_have_the_detail_shape(schema: dict[str, Any]) -> None:
    for key, operation in operations(schema).items():
        for code, response in operation["responses"].items():
            if not code.startswith("4"):
                continue
            assert response.get("description"), (key, code)
            body_schema = resolve_ref(schema, response["content"]["application/json"]["schema"])
            assert "detail" in body_schema["properties"], (key, code)


def test_login_is_documented_as_a_form(schema: dict[str, Any]) -> None:
    body = operations(schema)[("post", "/login")]["requestBody"]["content"]
    assert set(body) == {"application/x-www-form-urlencoded"}
    fields = resolve_ref(schema, body["application/x-www-form-urlencoded"]["schema"])
    assert {"username", "password"} <= set(fields["required"])


def test_the_authorize_button_works_end_to_end(client: TestClient, make_account: Callable[..., Account]) -> None:
    """What Swagger UI does: read the scheme, post the form to tokenUrl (relative to /docs), send the token."""
    account = make_account()
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = client.get("/openapi.json").json()
    (scheme,) = [s for s in schema["components"]["securitySchemes"].values() if s["type"] == "oauth2"]
    token_url = urljoin(str(docs.url), scheme["flows"]["password"]["tokenUrl"])

    token = client.post(
        token_url, data={"grant_type": "password", "username": account.email, "password": PASSWORD, "scope": ""}
    )

    assert token.status_code == 200, token.text
    assert token.json()["token_type"] == "bearer"
    me = client.get("/users/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == account.id


def test_redoc_is_not_served(client: TestClient) -> None:
    """ReDoc's page loads its script and fonts from a CDN, which the CSP forbids: /docs is the one docs page."""
    for path in ("/redoc", "/redoc/"):
        assert client.get(path).status_code == 404
