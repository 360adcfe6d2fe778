"""Logging in, the tokens it hands out, and everything a token can get wrong."""

import base64
import hashlib
import hmac
import json
import secrets
import statistics
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import bcrypt
import httpx2 as httpx
import jwt
import pytest
from conftest import PASSWORD, Account
from fastapi.testclient import TestClient
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import Connection, text

from app.config import Settings

SETTINGS = Settings()  # what the app under test reads from the environment conftest.py set


def login(client: TestClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/login", data={"username": username, "password": password})


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers.get("www-authenticate") == "Bearer"
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"detail"}


def not_unauthorized(responses: dict[str, httpx.Response]) -> dict[str, str]:
    """The responses, by label, that are not a proper 401 (see assert_unauthorized)."""
    wrong = {}
    for label, response in responses.items():
        try:
            assert_unauthorized(response)
        except AssertionError:
            wrong[label] = f"{response.status_code} {response.headers.get('www-authenticate')} {response.text[:200]}"
    return wrong


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(claims: dict[str, Any], *, key: str | None = None, header: dict[str, Any] | None = None) -> str:
    """A JWT built by hand, so that any claim or header can be wrong in any way."""
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if str(header.get("alg")).lower() == "none":
        return f"{signing_input}."
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[header["alg"]]
    signature = hmac.new((key or SETTINGS.SECRET_KEY).encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims_for(user_id: int | str, **changes: Any) -> dict[str, Any]:
    """The claims the API issues (a new account is at token generation 0); a change of None leaves one out."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + 600,
        "gen": 0,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def me(client: TestClient, token: str) -> httpx.Response:
    return client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


# --- logging in ----------------------------------------------------------------


def test_login_answers_a_bearer_token(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()

    response = login(client, account.email)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type"}
    assert body["token_type"] == "bearer"
    assert me(client, body["access_token"]).json()["id"] == account.id


def test_the_token_carries_the_contract_claims(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    before = int(time.time())

    token = login(client, account.email).json()["access_token"]

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SETTINGS.SECRET_KEY, algorithms=["HS256"])
    assert set(claims) == {"sub", "iat", "exp", "gen", "jti"}
    assert claims["sub"] == str(account.id)
    assert before - 5 <= claims["iat"] <= time.time() + 5
    assert claims["exp"] - claims["iat"] == SETTINGS.ACCESS_TOKEN_EXPIRE_MINUTES * 60
    assert claims["gen"] == 0  # a new account's first generation
    assert isinstance(claims["jti"], str) and len(claims["jti"]) == 22


def test_every_login_gets_a_token_of_its_own(client: TestClient, make_account: Callable[..., Account]) -> None:
    """Two logins in the same second still get different tokens (ids), so one can be logged out alone."""
    account = make_account()
    tokens = {login(client, account.email).json()["access_token"] for _ in range(3)}
    jtis = {jwt.decode(token, SETTINGS.SECRET_KEY, algorithms=["HS256"])["jti"] for token in tokens}
    assert len(tokens) == len(jtis) == 3


def test_tokens_last_30_minutes_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCESS_TOKEN_EXPIRE_MINUTES", raising=False)
    assert Settings(_env_file=None).ACCESS_TOKEN_EXPIRE_MINUTES == 30


@pytest.mark.parametrize("path", ["/login", "/login/"])
def test_login_works_with_and_without_the_trailing_slash(
    client: TestClient, make_account: Callable[..., Account], path: str
) -> None:
    account = make_account()
    response = client.post(path, data={"username": account.email, "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 200, response.text


def test_login_ignores_the_case_of_the_email(client: TestClient) -> None:
    registered = "Ada.Lovelace@Example.com"
    assert client.post("/users/", json={"email": registered, "password": PASSWORD}).status_code == 201
    spellings = [
        registered,
        "ada.lovelace@example.com",
        "ADA.LOVELACE@EXAMPLE.COM",
        "aDA.lOVELACE@eXAMPLE.cOM",
        "  Ada.Lovelace@Example.com  ",
    ]
    assert {typed: login(client, typed).status_code for typed in spellings} == dict.fromkeys(spellings, 200)


@pytest.mark.parametrize(
    "typed",
    [
        "  Ada@Example.com ",
        "ÄNNE@example.com",  # non-ASCII capital
        "İlkay@example.com",  # lower() of İ is two code points in Python, one in SQL
        unicodedata.normalize("NFD", "ÉLODIE@example.com"),  # decomposed accents
        "Grace Hopper <GRACE@example.com>",  # display-name form
    ],
    ids=["spaces-and-capitals", "non-ascii-capital", "dotted-capital-i", "decomposed-accent", "display-name"],
)
def test_the_email_as_typed_at_registration_always_logs_in(client: TestClient, sql: Connection, typed: str) -> None:
    registered = client.post("/users/", json={"email": typed, "password": PASSWORD})
    if registered.status_code == 422:
        return  # refusing an address at registration keeps the promise too
    assert registered.status_code == 201, registered.text

    assert login(client, typed).status_code == 200
    # And it is one account, whatever the case: the lower-case spelling is the same email.
    assert client.post("/users/", json={"email": typed.lower(), "password": PASSWORD}).status_code == 409
    assert sql.execute(text("SELECT count(*) FROM users")).scalar_one() == 1


def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()

    wrong_password = login(client, account.email, "not the password")
    unknown_email = login(client, "nobody@example.com", "not the password")

    assert_unauthorized(wrong_password)
    assert_unauthorized(unknown_email)
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.headers.get("www-authenticate") == unknown_email.headers.get("www-authenticate")


def test_a_long_wrong_password_is_just_wrong(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    assert_unauthorized(login(client, account.email, "x" * 500))


def test_an_unknown_email_costs_as_much_time_as_a_wrong_password(
    client: TestClient, make_account: Callable[..., Account], sql: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real-world hashing cost for both the account and the dummy, so the difference shows.
    expensive = Argon2Hasher(time_cost=3, memory_cost=65536)
    account = make_account()
    sql.execute(
        text("UPDATE users SET password = :hash WHERE id = :id"),
        {"hash": expensive.hash(account.password), "id": account.id},
    )
    passwords = client.app.state.passwords  # type: ignore[attr-defined]
    monkeypatch.setattr(passwords, "dummy_hash", expensive.hash(secrets.token_urlsafe(16)))

    def timed(username: str) -> float:
        start = time.perf_counter()
        response = login(client, username, "wrong password")
        elapsed = time.perf_counter() - start
        assert_unauthorized(response)
        return elapsed

    wrong_password, unknown_email = [], []
    for i in range(3):  # interleaved, so load on the machine hits both alike
        wrong_password.append(timed(account.email))
        unknown_email.append(timed(f"nobody{i}@example.com"))

    assert statistics.median(unknown_email) >= 0.5 * statistics.median(wrong_password), (
        unknown_email,
        wrong_password,
    )


def test_login_takes_a_form_not_json(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    response = client.post("/login", json={"username": account.email, "password": PASSWORD})
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"detail"}


def test_login_without_a_field_is_422(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    for form in ({}, {"username": account.email}, {"password": PASSWORD}, {"username": "", "password": PASSWORD}):
        response = client.post("/login", data=form)
        assert response.status_code == 422, (form, response.text)
        assert set(response.json()) == {"detail"}


# --- adopting a course database --------------------------------------------------


def insert_bcrypt_user(sql: Connection, email: str, password: str) -> int:
    """An account as the course app stores it: a $2b$ bcrypt hash."""
    password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert password_hash.startswith("$2b$")
    sql.execute(
        text("INSERT INTO users (email, password) VALUES (:email, :hash)"), {"email": email, "hash": password_hash}
    )
    return int(sql.execute(text("SELECT id FROM users WHERE email = :email"), {"email": email}).scalar_one())


def test_a_bcrypt_hash_logs_in_and_is_replaced_by_argon2id(client: TestClient, sql: Connection) -> None:
    user_id = insert_bcrypt_user(sql, "course@example.com", "course password")

    assert_unauthorized(login(client, "course@example.com", "wrong password"))
    assert (
        sql.execute(text("SELECT password FROM users WHERE id = :id"), {"id": user_id}).scalar_one().startswith("$2b$")
    )  # a failed attempt changes nothing

    first = login(client, "course@example.com", "course password")
    assert first.status_code == 200, first.text
    assert me(client, first.json()["access_token"]).json()["id"] == user_id

    new_hash = sql.execute(text("SELECT password FROM users WHERE id = :id"), {"id": user_id}).scalar_one()
    assert new_hash.startswith("$argon2id$")

    assert login(client, "course@example.com", "course password").status_code == 200
    assert_unauthorized(login(client, "course@example.com", "wrong password"))


def test_a_bcrypt_account_refuses_a_password_over_72_bytes_without_crashing(
    client: TestClient, sql: Connection
) -> None:
    insert_bcrypt_user(sql, "course@example.com", "course password")
    assert_unauthorized(login(client, "course@example.com", "course password" + "é" * 60))


def test_an_unusable_stored_hash_never_matches(client: TestClient, sql: Connection) -> None:
    sql.execute(text("INSERT INTO users (email, password) VALUES ('locked@example.com', '!')"))
    assert_unauthorized(login(client, "locked@example.com", "!"))


# --- tokens ------------------------------------------------------------------------


def test_a_malformed_authorization_header_is_401(client: TestClient) -> None:
    headers = [
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer " + "x" * 100_000,
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "bearer",
    ]
    responses = {value[:20]: client.get("/posts/", headers={"Authorization": value}) for value in headers}
    assert not_unauthorized(responses) == {}


def test_a_token_signed_with_another_key_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    assert_unauthorized(me(client, forge(claims_for(account.id), key="another-key-that-is-also-32-bytes-long!")))


def test_a_token_with_a_damaged_signature_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    payload, signature = account.token.rsplit(".", 1)
    middle = len(signature) // 2
    damaged = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    assert_unauthorized(me(client, f"{payload}.{damaged}"))


def test_a_token_whose_claims_were_edited_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    victim = make_account()
    attacker = make_account()
    header, _claims, signature = attacker.token.split(".")
    edited = b64url(json.dumps(claims_for(victim.id)).encode())
    assert_unauthorized(me(client, f"{header}.{edited}.{signature}"))


def test_an_unsigned_alg_none_token_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    for alg in ("none", "None", "NONE"):
        assert_unauthorized(me(client, forge(claims_for(account.id), header={"alg": alg, "typ": "JWT"})))


def test_a_token_with_another_hmac_algorithm_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    assert_unauthorized(me(client, forge(claims_for(account.id), header={"alg": "HS512", "typ": "JWT"})))


def test_a_correctly_forged_token_is_accepted(client: TestClient, make_account: Callable[..., Account]) -> None:
    """Control for the tests below: the hand-made tokens fail only for the flaw each one has."""
    account = make_account()
    response = me(client, forge(claims_for(account.id)))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == account.id


def test_a_token_without_a_required_claim_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    responses = {}
    for missing in ("sub", "iat", "exp", "gen", "jti"):
        claims = claims_for(account.id)
        del claims[missing]
        responses[missing] = me(client, forge(claims))
    assert not_unauthorized(responses) == {}


def test_a_token_whose_subject_is_not_a_string_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    responses = {}
    for subject in (account.id, [account.id], {"id": account.id}, None, True, float(account.id)):
        claims = claims_for(account.id)
        claims["sub"] = subject
        responses[repr(subject)] = me(client, forge(claims))
    assert not_unauthorized(responses) == {}


def test_a_token_naming_no_account_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    subjects = ["", "0", "-1", "abc", "1e3", str(account.id + 1000), str(2**31), str(2**63 - 1), str(2**63), "9" * 30]
    assert not_unauthorized({subject: me(client, forge(claims_for(subject))) for subject in subjects}) == {}


def test_a_token_with_a_non_numeric_time_is_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    responses = {claim: me(client, forge(claims_for(account.id, **{claim: "tomorrow"}))) for claim in ("exp", "iat")}
    assert not_unauthorized(responses) == {}


def test_a_deleted_accounts_token_does_not_pass_to_the_next_account(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    first = make_account()
    sql.execute(text("DELETE FROM users WHERE id = :id"), {"id": first.id})
    second = make_account()

    response = me(client, first.token)
    if response.status_code == 200:
        assert response.json()["id"] != second.id, "a new account inherited the id of a deleted one"
    assert_unauthorized(response)


def test_tokens_with_claims_we_never_issue_are_401(client: TestClient, make_account: Callable[..., Account]) -> None:
    """Signed with the right key, but not a token this API writes: exact claim types and a bounded lifetime."""
    account = make_account()
    now = int(time.time())
    lifetime = SETTINGS.ACCESS_TOKEN_EXPIRE_MINUTES * 60
    odd = {
        "exp as a string": claims_for(account.id, exp=str(now + 600)),
        "iat as a string": claims_for(account.id, iat=str(now)),
        "exp as a float": claims_for(account.id, exp=now + 600.5),
        "exp as a boolean": claims_for(account.id, exp=True),
        "exp of 10**30": claims_for(account.id, exp=10**30),
        "exp past the lifetime": claims_for(account.id, exp=now + lifetime + 3600),
        "sub with a leading zero": claims_for(f"000{account.id}"),
        "sub with a sign": claims_for(f"+{account.id}"),
        "sub as a number": {**claims_for(account.id), "sub": account.id},
        "sub of 20 digits": claims_for("1" * 20),
        "iat in the future": claims_for(account.id, iat=now + 3600, exp=now + 3600 + 600),
        "gen as a string": claims_for(account.id, gen="0"),
        "gen as a float": claims_for(account.id, gen=0.0),
        "gen as a boolean": claims_for(account.id, gen=False),
        "gen below 0": claims_for(account.id, gen=-1),
        "gen beyond INTEGER": claims_for(account.id, gen=2**31),
        "gen of another generation": claims_for(account.id, gen=1),
        "jti as a number": claims_for(account.id, jti=12345),
        "jti too short": claims_for(account.id, jti="abc"),
        "jti too long": claims_for(account.id, jti="A" * 23),
        "jti with other characters": claims_for(account.id, jti="A" * 21 + "="),
    }
    assert not_unauthorized({label: me(client, forge(claims)) for label, claims in odd.items()}) == {}
    assert me(client, forge(claims_for(account.id, exp=now + lifetime))).status_code == 200  # a lifetime we issue
