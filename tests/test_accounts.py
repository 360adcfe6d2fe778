"""Accounts people manage themselves (issue 16), over HTTP: the phone number, the password,
deleting the account, logging out one token or every token, and revocation racing requests."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import jwt
from conftest import PASSWORD, Account, assert_error, misanswered
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

NEW_PASSWORD = "a brand new password"
ME_FIELDS = {"id", "email", "created_at", "phone_number"}


def login(client: TestClient, email: str, password: str) -> httpx.Response:
    return client.post("/login", data={"username": email, "password": password})


def new_token(client: TestClient, account: Account, password: str = PASSWORD) -> dict[str, str]:
    """The headers of another login of the same account (another device)."""
    response = login(client, account.email, password)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def change_password(
    client: TestClient, headers: dict[str, str], current: str = PASSWORD, new: str = NEW_PASSWORD
) -> httpx.Response:
    return client.put("/users/me/password", json={"current_password": current, "new_password": new}, headers=headers)


def delete_account(client: TestClient, headers: dict[str, str], password: str = PASSWORD) -> httpx.Response:
    return client.request("DELETE", "/users/me", json={"password": password}, headers=headers)


def new_post(client: TestClient, account: Account, **fields: Any) -> int:
    response = client.post("/posts/", json={"title": "t", "content": "c", **fields}, headers=account.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def vote(client: TestClient, account: Account, post_id: int) -> None:
    response = client.post("/vote/", json={"post_id": post_id, "dir": 1}, headers=account.headers)
    assert response.status_code == 201, response.text


def votes_on(client: TestClient, reader: Account, post_id: int) -> int:
    response = client.get(f"/posts/{post_id}", headers=reader.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["votes"])


def refused(client: TestClient, headers: dict[str, str]) -> dict[str, str]:
    """What a revoked token gets wrong: each of a read, a list, a write and a vote must be 401."""
    responses = {
        "GET /users/me": client.get("/users/me", headers=headers),
        "GET /posts/": client.get("/posts/", headers=headers),
        "POST /posts/": client.post("/posts/", json={"title": "t", "content": "c"}, headers=headers),
        "POST /logout": client.post("/logout", headers=headers),
    }
    wrong = misanswered(401, responses)
    for label, response in responses.items():
        if response.status_code == 401 and response.headers.get("www-authenticate") != "Bearer":
            wrong[label] = "401 without WWW-Authenticate: Bearer"
    return wrong


def works(client: TestClient, headers: dict[str, str]) -> bool:
    return client.get("/users/me", headers=headers).status_code == 200


# --- the phone number ----------------------------------------------------------------


def test_patch_me_sets_changes_and_clears_the_phone_number(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()

    set_ = client.patch("/users/me", json={"phone_number": "+44 20 7946 0000"}, headers=account.headers)
    assert set_.status_code == 200, set_.text
    assert set(set_.json()) == ME_FIELDS
    assert set_.json()["phone_number"] == "+442079460000"
    assert set_.json()["id"] == account.id and set_.json()["email"] == account.email
    assert client.get("/users/me", headers=account.headers).json() == set_.json()

    unchanged = client.patch("/users/me", json={}, headers=account.headers)
    assert unchanged.status_code == 200 and unchanged.json() == set_.json()

    cleared = client.patch("/users/me/", json={"phone_number": None}, headers=account.headers)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["phone_number"] is None
    assert client.get("/users/me", headers=account.headers).json()["phone_number"] is None


def test_patch_me_refuses_what_registration_refuses(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    account = make_account()
    bodies: dict[str, Any] = {
        "too short": {"phone_number": "12345"},
        "letters": {"phone_number": "call me"},
        "a number": {"phone_number": 5550001111},
        "an email change": {"email": "other@example.com"},
        "a password": {"password": "another password"},
        "not an object": ["+15550001111"],
    }
    responses = {label: client.patch("/users/me", json=body, headers=account.headers) for label, body in bodies.items()}
    assert misanswered(422, responses) == {}
    row = sql.execute(text("SELECT email, phone_number FROM users WHERE id = :id"), {"id": account.id}).one()
    assert tuple(row) == (account.email, None)


def test_patch_me_changes_only_the_callers_account(client: TestClient, make_account: Callable[..., Account]) -> None:
    me, other = make_account(), make_account()
    client.patch("/users/me", json={"phone_number": "+15550001111"}, headers=me.headers)
    assert client.get("/users/me", headers=other.headers).json()["phone_number"] is None


# --- the password ----------------------------------------------------------------------


def test_changing_the_password_answers_204_and_only_the_new_one_logs_in(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()

    response = change_password(client, account.headers)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert login(client, account.email, PASSWORD).status_code == 401
    assert login(client, account.email, NEW_PASSWORD).status_code == 200


def test_changing_the_password_refuses_every_older_token_and_not_the_next(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    other_device = new_token(client, account)
    bystander = make_account()
    assert works(client, account.headers) and works(client, other_device)  # both verified and remembered

    assert change_password(client, account.headers).status_code == 204

    assert refused(client, account.headers) == {}
    assert refused(client, other_device) == {}
    assert works(client, new_token(client, account, NEW_PASSWORD))
    assert works(client, bystander.headers)


def test_a_wrong_current_password_is_403_and_changes_nothing(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    account = make_account()
    stored = "SELECT password, token_generation FROM users WHERE id = :id"
    before = tuple(sql.execute(text(stored), {"id": account.id}).one())

    response = change_password(client, account.headers, current="not my password")

    assert_error(response, 403)
    assert tuple(sql.execute(text(stored), {"id": account.id}).one()) == before
    assert works(client, account.headers)
    assert login(client, account.email, PASSWORD).status_code == 200


def test_the_new_password_follows_the_registration_rules(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    bodies: dict[str, Any] = {
        "too short": {"current_password": PASSWORD, "new_password": "short"},
        "too long": {"current_password": PASSWORD, "new_password": "x" * 129},
        "NUL": {"current_password": PASSWORD, "new_password": "with a \x00 inside"},
        "missing": {"current_password": PASSWORD},
        "no current": {"new_password": NEW_PASSWORD},
        "empty current": {"current_password": "", "new_password": NEW_PASSWORD},
        "unknown field": {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    }
    responses = {
        label: client.put("/users/me/password", json=body, headers=account.headers) for label, body in bodies.items()
    }
    assert misanswered(422, responses) == {}
    assert works(client, account.headers)


def test_wrong_current_passwords_count_as_failed_logins(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    """A stolen token must not buy unlimited guesses: the account locks as after failed logins."""
    limited = app_with(RATE_LIMIT_ENABLED=True, RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=3)
    account = make_account()
    for _ in range(3):
        assert change_password(limited, account.headers, current="guess number n").status_code == 403
    locked = change_password(limited, account.headers)  # the right one, during the lock
    assert locked.status_code == 429, locked.text
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    assert login(limited, account.email, PASSWORD).status_code == 429  # the same lock as logins
    assert delete_account(limited, account.headers).status_code == 429
    assert works(limited, account.headers)


def test_failed_logins_count_against_password_changes_and_a_success_clears_them(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    limited = app_with(RATE_LIMIT_ENABLED=True, RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=3)
    account = make_account()
    for _ in range(2):
        assert login(limited, account.email, "wrong password!").status_code == 401
    assert change_password(limited, account.headers, current="wrong again").status_code == 403
    assert change_password(limited, account.headers).status_code == 429
    # Another account is not locked by this one's failures.
    other = make_account()
    assert change_password(limited, other.headers).status_code == 204
    assert login(limited, other.email, NEW_PASSWORD).status_code == 200


def test_a_wrong_current_password_takes_as_long_as_a_failed_login(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    app = app_with()
    account = make_account()
    floor = app.app.state.passwords.failure_floor_seconds  # type: ignore[attr-defined]
    started = time.perf_counter()
    assert change_password(app, account.headers, current="not my password").status_code == 403
    assert time.perf_counter() - started >= floor


def test_a_revoked_token_is_401_before_the_password_is_checked(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    assert client.post("/logout", headers=account.headers).status_code == 204
    assert_error(change_password(client, account.headers), 401)
    assert_error(change_password(client, account.headers, current="wrong"), 401)
    assert_error(delete_account(client, account.headers), 401)
    assert login(client, account.email, PASSWORD).status_code == 200  # the password did not change


# --- deleting the account -------------------------------------------------------------


def test_deleting_the_account_takes_its_posts_and_votes_and_the_counts_follow(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    leaver, stayer, voter = make_account(), make_account(), make_account()
    leavers_posts = [new_post(client, leaver), new_post(client, leaver, published=False)]
    stayers_post = new_post(client, stayer)
    vote(client, leaver, stayers_post)  # the leaver's vote on someone else's post
    vote(client, voter, stayers_post)
    vote(client, voter, leavers_posts[0])  # someone else's vote on the leaver's post
    vote(client, leaver, leavers_posts[0])
    assert votes_on(client, stayer, stayers_post) == 2

    response = delete_account(client, leaver.headers)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert votes_on(client, stayer, stayers_post) == 1  # the count follows
    assert_error(client.get(f"/posts/{leavers_posts[0]}", headers=stayer.headers), 404)
    assert [item["Post"]["id"] for item in client.get("/posts/", headers=voter.headers).json()] == [stayers_post]
    assert_error(client.get(f"/users/{leaver.id}", headers=stayer.headers), 404)
    counts = sql.execute(
        text(
            "SELECT (SELECT count(*) FROM users WHERE id = :id), (SELECT count(*) FROM posts WHERE owner_id = :id), "
            "(SELECT count(*) FROM votes WHERE user_id = :id), "
            "(SELECT count(*) FROM votes WHERE post_id IN (:a, :b))"
        ),
        {"id": leaver.id, "a": leavers_posts[0], "b": leavers_posts[1]},
    ).one()
    assert tuple(counts) == (0, 0, 0, 0)
    assert refused(client, leaver.headers) == {}
    assert login(client, leaver.email, PASSWORD).status_code == 401


def test_a_deleted_accounts_email_can_register_again_under_a_new_id(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    leaver = make_account(email="leaver@example.com")
    assert delete_account(client, leaver.headers).status_code == 204
    again = make_account(email="leaver@example.com")
    assert again.id != leaver.id
    assert refused(client, leaver.headers) == {}  # the old token does not pass to the newcomer


def test_deleting_needs_the_password(client: TestClient, make_account: Callable[..., Account], sql: Connection) -> None:
    account = make_account()
    post_id = new_post(client, account)
    assert_error(delete_account(client, account.headers, password="not my password"), 403)
    missing = client.request("DELETE", "/users/me", headers=account.headers)
    assert missing.status_code == 422, missing.text
    assert sql.execute(text("SELECT count(*) FROM posts WHERE id = :id"), {"id": post_id}).scalar_one() == 1
    assert works(client, account.headers)


# --- logging out --------------------------------------------------------------------------


def test_logout_refuses_that_token_only(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    other_device = new_token(client, account)
    assert works(client, account.headers)  # verified and remembered first

    response = client.post("/logout", headers=account.headers)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert refused(client, account.headers) == {}
    assert works(client, other_device)
    assert works(client, new_token(client, account))


def test_logout_works_with_and_without_the_trailing_slash(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    assert client.post("/logout/", headers=account.headers).status_code == 204
    assert client.post("/logout", headers=new_token(client, account)).status_code == 204


def test_logout_keeps_the_revocation_until_the_token_expires_then_forgets_it(
    client: TestClient, make_account: Callable[..., Account], sql: Connection
) -> None:
    account = make_account()
    claims = jwt.decode(account.token, options={"verify_signature": False})
    sql.execute(
        text("INSERT INTO revoked_tokens (jti, expires_at) VALUES ('expired-a', 1000), ('expired-b', :later)"),
        {"later": int(time.time()) - 1},
    )

    assert client.post("/logout", headers=account.headers).status_code == 204

    rows = sql.execute(text("SELECT jti, expires_at FROM revoked_tokens")).all()
    assert [tuple(row) for row in rows] == [(claims["jti"], claims["exp"])]


def test_logout_everywhere_refuses_every_token_of_the_account(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    other_device = new_token(client, account)
    bystander = make_account()

    response = client.post("/users/me/logout-all", headers=account.headers)

    assert response.status_code == 204, response.text
    assert refused(client, account.headers) == {}
    assert refused(client, other_device) == {}
    assert works(client, bystander.headers)
    assert works(client, new_token(client, account))  # logging in again works, with the same password


def test_every_revocation_takes_effect_in_the_same_app_at_once(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    """The token memo (app/security.py) holds each token after its first use; none may outlive a revocation."""
    tokens = client.app.state.tokens  # type: ignore[attr-defined]
    account = make_account()
    assert works(client, account.headers)
    assert account.token in tokens._verified
    assert client.post("/users/me/logout-all", headers=account.headers).status_code == 204
    assert account.token in tokens._verified  # still remembered as well-signed...
    assert refused(client, account.headers) == {}  # ...and refused all the same


# --- a request in flight during a password change ---------------------------------------------


def test_requests_racing_a_password_change_never_fail_and_none_passes_after_it(
    live_server: str, client: TestClient, make_account: Callable[..., Account]
) -> None:
    """Threads read the feed and write posts with the old token while the password changes.

    A request that started before the change returned may see either answer (200 or 201, or
    401); every request that started after it must be 401, and none may be a 5xx.
    """
    account = make_account()
    other = make_account()
    new_post(client, other)
    stop = threading.Event()
    results: list[tuple[float, float, str, int]] = []  # (started, ended, what, status)
    lock = threading.Lock()

    def hammer(index: int) -> None:
        with httpx.Client(base_url=live_server, headers=account.headers, timeout=10) as http:
            while not stop.is_set():
                what = "write" if index % 3 == 0 else "read"
                started = time.monotonic()
                if what == "write":
                    status = http.post("/posts/", json={"title": "race", "content": "c"}).status_code
                else:
                    status = http.get("/posts/?limit=5").status_code
                with lock:
                    results.append((started, time.monotonic(), what, status))

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(hammer, i) for i in range(6)]
        time.sleep(0.5)
        with httpx.Client(base_url=live_server, timeout=10) as http:
            changed = http.put(
                "/users/me/password",
                json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                headers=account.headers,
            )
        change_returned = time.monotonic()
        time.sleep(0.5)
        stop.set()
        for future in futures:
            future.result()

    assert changed.status_code == 204, changed.text
    before = [status for started, _, _, status in results if started < change_returned]
    after = [(what, status) for started, _, what, status in results if started > change_returned]
    assert all(status < 500 for _, _, _, status in results), sorted({status for *_, status in results})
    assert {200, 201} & set(before), "no request got through before the change: the race was not run"
    assert after and all(status == 401 for _, status in after), [x for x in after if x[1] != 401][:5]
    assert {what for what, _ in after} == {"read", "write"}
