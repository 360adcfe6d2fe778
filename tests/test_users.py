"""Accounts over HTTP: registering, looking someone up, looking yourself up."""

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx2 as httpx
import pytest
from conftest import PASSWORD, Account, assert_error, misanswered
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

PUBLIC_USER_FIELDS = {"id", "email", "created_at"}


def register(client: TestClient, email: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    return client.post("/users/", json={"email": email, "password": password, **extra})


def assert_timestamp(value: object) -> None:
    """ISO 8601 with an explicit offset, whatever the database."""
    assert isinstance(value, str)
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value


def user_count(sql: Connection) -> int:
    return int(sql.execute(text("SELECT count(*) FROM users")).scalar_one())


def stored_hash(sql: Connection, user_id: int) -> str:
    return str(sql.execute(text("SELECT password FROM users WHERE id = :id"), {"id": user_id}).scalar_one())


# --- registration --------------------------------------------------------------


def test_register_answers_201_with_exactly_the_public_fields(client: TestClient, sql: Connection) -> None:
    response = register(client, "ada@example.com")

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == PUBLIC_USER_FIELDS
    assert isinstance(body["id"], int) and body["id"] >= 1
    assert body["email"] == "ada@example.com"
    assert_timestamp(body["created_at"])
    # Neither the password nor what is stored for it appears anywhere in the answer.
    password_hash = stored_hash(sql, body["id"])
    assert PASSWORD not in response.text
    assert password_hash not in response.text
    assert "password" not in response.text.lower()


def test_the_password_is_stored_as_an_argon2id_hash(client: TestClient, sql: Connection) -> None:
    user_id = register(client, "ada@example.com").json()["id"]

    password_hash = stored_hash(sql, user_id)
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash


def test_a_duplicate_email_is_409_whatever_its_case(client: TestClient, sql: Connection) -> None:
    assert register(client, "ada@example.com").status_code == 201

    duplicates = ["ada@example.com", "ADA@EXAMPLE.COM", "Ada@Example.com", "ada@EXAMPLE.com", "  ada@example.com "]
    assert misanswered(409, {email: register(client, email, password="another password") for email in duplicates}) == {}
    assert user_count(sql) == 1


def test_a_duplicate_of_a_mixed_case_registration_is_409(client: TestClient, sql: Connection) -> None:
    assert register(client, "Grace.Hopper@Navy.example").status_code == 201

    assert_error(register(client, "grace.hopper@navy.example"), 409)
    assert user_count(sql) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ÄNNE@example.com", "änne@example.com"),
        ("josé@example.com", "JOSÉ@example.com"),
        ("ΩMEGA@example.com", "ωmega@example.com"),
    ],
    ids=["a-umlaut", "e-acute", "greek-omega"],
)
def test_a_duplicate_differing_in_non_ascii_case_is_409(
    client: TestClient, sql: Connection, first: str, second: str
) -> None:
    registered = register(client, first)
    if registered.status_code == 422:
        return  # an API may refuse non-ASCII addresses altogether
    assert registered.status_code == 201, registered.text
    assert_error(register(client, second), 409)
    assert user_count(sql) == 1


INVALID_EMAILS = [
    "",
    "plainaddress",
    "@example.com",
    "ada@",
    "ada@@example.com",
    "ada example@example.com",
    "ada@example",
    "ada@-example.com",
    "a" * 64 + "@" + "x" * 60 + "." + "y" * 60 + "." + "z" * 60 + "." + "w" * 60 + ".com",  # > 254 characters
    "ada@" + "x" * 250 + ".com",
]


def test_an_invalid_email_is_422(client: TestClient, sql: Connection) -> None:
    assert misanswered(422, {email[:40]: register(client, email) for email in INVALID_EMAILS}) == {}
    assert user_count(sql) == 0


def test_missing_fields_are_422(client: TestClient, sql: Connection) -> None:
    bodies: list[dict[str, str]] = [{}, {"email": "ada@example.com"}, {"password": PASSWORD}]
    assert misanswered(422, {str(body): client.post("/users/", json=body) for body in bodies}) == {}
    assert user_count(sql) == 0


def test_a_password_shorter_than_8_characters_is_422(client: TestClient, sql: Connection) -> None:
    passwords = ["", "a", "1234567", "seven!!", "é" * 7]
    assert misanswered(422, {p: register(client, "ada@example.com", password=p) for p in passwords}) == {}
    assert user_count(sql) == 0


def test_an_absurdly_long_password_is_422(client: TestClient, sql: Connection) -> None:
    lengths = [129, 1_000, 100_000]
    assert misanswered(422, {str(n): register(client, "ada@example.com", password="p" * n) for n in lengths}) == {}
    assert user_count(sql) == 0


def test_passwords_of_8_to_128_characters_are_accepted(client: TestClient) -> None:
    for i, password in enumerate(["12345678", "p" * 128]):
        email = f"user{i}@example.com"
        assert register(client, email, password=password).status_code == 201
        assert client.post("/login", data={"username": email, "password": password}).status_code == 200


@pytest.mark.parametrize(
    "password",
    [
        "пароль-пароль",  # Cyrillic, 2 bytes a character
        "密码密码密码密码",  # 8 characters, 24 bytes
        "🔑" * 30,  # 120 bytes: over bcrypt's 72-byte limit, within the character limit
        "é" * 128,  # 256 bytes at the 128-character limit
    ],
)
def test_multi_byte_passwords_register_and_log_in(client: TestClient, password: str) -> None:
    assert register(client, "ada@example.com", password=password).status_code == 201

    login = client.post("/login", data={"username": "ada@example.com", "password": password})
    assert login.status_code == 200, login.text
    # Only the exact password works (no truncation to a byte prefix).
    wrong = client.post("/login", data={"username": "ada@example.com", "password": password[:-1] + "x"})
    assert wrong.status_code == 401


COMMON_PHONE_FORMATS = [
    "+1 (555) 123-4567",
    "555-123-4567",
    "(555) 123 4567",
    "+44 20 7946 0958",
    "020.7946.0958",
    "+4915123456789",
    "5551234567",
]


def test_a_phone_number_in_a_common_format_is_accepted(client: TestClient) -> None:
    for i, phone in enumerate(COMMON_PHONE_FORMATS):
        email = f"user{i}@example.com"
        response = register(client, email, phone_number=phone)
        assert response.status_code == 201, (phone, response.text)
        assert set(response.json()) == PUBLIC_USER_FIELDS

        token = client.post("/login", data={"username": email, "password": PASSWORD}).json()["access_token"]
        stored = client.get("/users/me", headers={"Authorization": f"Bearer {token}"}).json()["phone_number"]
        # However it is formatted, the number itself is kept: same digits, same international prefix.
        assert re.sub(r"\D", "", stored) == re.sub(r"\D", "", phone), phone
        assert stored.startswith("+") == phone.startswith("+"), phone


def test_a_malformed_phone_number_is_422(client: TestClient, sql: Connection) -> None:
    malformed: list[object] = [
        "abc",
        "123",
        "+",
        "++15551234567",
        "555-CALL-NOW",
        "1" * 40,
        "+1 555 123 4567 ext. 9",
        "12345678901234567890",
        # not even a string
        5551234567,
        ["5551234567"],
        {"n": "5551234567"},
        True,
    ]
    responses = {repr(phone): register(client, "ada@example.com", phone_number=phone) for phone in malformed}
    assert misanswered(422, responses) == {}
    assert user_count(sql) == 0


def test_the_phone_number_is_optional(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    assert client.get("/users/me", headers=account.headers).json()["phone_number"] is None


def test_registering_chooses_its_own_id_and_timestamp(client: TestClient) -> None:
    response = register(client, "ada@example.com", id=424242, created_at="1999-01-01T00:00:00+00:00")

    # Refusing the extra fields would do; taking them would not.
    if response.status_code != 422:
        assert response.status_code == 201, response.text
        assert response.json()["id"] != 424242
        assert not response.json()["created_at"].startswith("1999")


def test_sixteen_simultaneous_registrations_of_one_email_create_one_account(
    client: TestClient, sql: Connection
) -> None:
    barrier = threading.Barrier(16)

    def attempt(i: int) -> int:
        email = "race@example.com" if i % 2 else "RACE@example.com"
        barrier.wait()
        return register(client, email).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(attempt, range(16)))

    assert sorted(statuses) == [201] + [409] * 15
    assert user_count(sql) == 1


# --- looking accounts up -------------------------------------------------------


def test_get_user_by_id_answers_the_public_profile(client: TestClient, make_account: Callable[..., Account]) -> None:
    viewer = make_account()
    created = register(client, "grace@example.com", phone_number="+1 555 123 4567").json()

    response = client.get(f"/users/{created['id']}", headers=viewer.headers)

    assert response.status_code == 200, response.text
    assert response.json() == created
    assert set(response.json()) == PUBLIC_USER_FIELDS  # no phone number for other people


def test_get_user_by_id_requires_a_token(client: TestClient) -> None:
    user_id = register(client, "grace@example.com").json()["id"]

    response = client.get(f"/users/{user_id}")

    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert "grace@example.com" not in response.text


def test_get_a_missing_user_is_404(client: TestClient, make_account: Callable[..., Account]) -> None:
    viewer = make_account()
    missing = [viewer.id + 1000, 2**31, 2**40, 2**63 - 1]
    assert misanswered(404, {str(i): client.get(f"/users/{i}", headers=viewer.headers) for i in missing}) == {}


def test_get_user_with_an_out_of_range_id_is_422(client: TestClient, make_account: Callable[..., Account]) -> None:
    viewer = make_account()
    bad = ["0", "-1", str(2**63), str(10**30), "abc", "1.5"]
    assert misanswered(422, {i: client.get(f"/users/{i}", headers=viewer.headers) for i in bad}) == {}


def test_users_me_answers_the_caller_with_the_phone_number(client: TestClient) -> None:
    created = register(client, "ada@example.com", phone_number="+44 20 7946 0958").json()
    register(client, "someone.else@example.com", phone_number="555-123-4567")
    token = client.post("/login", data={"username": "ada@example.com", "password": PASSWORD}).json()["access_token"]

    response = client.get("/users/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == PUBLIC_USER_FIELDS | {"phone_number"}
    assert {key: body[key] for key in PUBLIC_USER_FIELDS} == created
    assert re.sub(r"\D", "", body["phone_number"]) == "442079460958"
    assert PASSWORD not in response.text and "$argon2" not in response.text


def test_users_me_requires_a_token(client: TestClient) -> None:
    response = client.get("/users/me")
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_nobody_can_list_every_account(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account(email="private@example.com")
    for headers in ({}, account.headers):
        for path in ("/users", "/users/"):
            response = client.get(path, headers=headers)
            assert 400 <= response.status_code < 500, response.text
            assert "private@example.com" not in response.text


# --- both spellings of every path ----------------------------------------------


@pytest.mark.parametrize("path", ["/users", "/users/"])
def test_register_works_with_and_without_the_trailing_slash(client: TestClient, path: str) -> None:
    response = client.post(path, json={"email": "ada@example.com", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("path", ["/users/me", "/users/me/"])
def test_users_me_works_with_and_without_the_trailing_slash(
    client: TestClient, make_account: Callable[..., Account], path: str
) -> None:
    account = make_account()
    response = client.get(path, headers=account.headers, follow_redirects=False)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == account.id


@pytest.mark.parametrize("suffix", ["", "/"])
def test_get_user_works_with_and_without_the_trailing_slash(
    client: TestClient, make_account: Callable[..., Account], suffix: str
) -> None:
    account = make_account()
    response = client.get(f"/users/{account.id}{suffix}", headers=account.headers, follow_redirects=False)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == account.id
