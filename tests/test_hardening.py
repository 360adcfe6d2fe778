"""Brute-force limits, health checks, HTTP hygiene (body limit, headers, request ids, CORS, access log)."""

import asyncio
import io
import json
import logging
import statistics
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest
from conftest import PASSWORD, Account
from fastapi.testclient import TestClient
from pwdlib.hashers.bcrypt import BcryptHasher
from sqlalchemy import Connection, text

from app.domain.ratelimit import RateLimits
from app.http.admission import Admission
from app.http.logs import BufferedStreamHandler, JsonLogFormatter
from app.http.middleware import RequestContextMiddleware


def register(client: TestClient, email: str) -> int:
    response = client.post("/users/", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def login(client: TestClient, email: str, password: str) -> Any:
    return client.post("/login", data={"username": email, "password": password})


# --- the limits themselves ---------------------------------------------------------


def test_a_limit_refuses_after_the_limit_and_forgets_after_the_window() -> None:
    async def scenario() -> list[int | None]:
        limits = RateLimits.build(
            "memory://", 1, failed_logins_per_address=3, failed_logins_per_account=3, registrations_per_address=3
        )
        limit, answers = limits.failed_logins_per_account, []
        for _ in range(3):
            answers.append(await limit.retry_after("k"))
            await limit.hit("k")
        answers.append(await limit.retry_after("k"))  # the limit reached: 1 s, the window
        answers.append(await limits.failed_logins_per_address.retry_after("k"))  # another limit, another key
        answers.append(await limit.retry_after("other"))
        await asyncio.sleep(1.05)
        answers.append(await limit.retry_after("k"))  # the window has passed
        for _ in range(3):
            await limit.hit("k")
        await limit.reset("k")
        answers.append(await limit.retry_after("k"))
        return answers

    assert asyncio.run(scenario()) == [None, None, None, 1, None, None, None, None]


# --- brute force over HTTP ---------------------------------------------------------


def test_failed_logins_lock_the_account_with_429_and_retry_after(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    limited = app_with(RATE_LIMIT_ENABLED=True, RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=5)
    victim = make_account()
    for _ in range(5):
        assert login(limited, victim.email, "wrong password!").status_code == 401
    refused = login(limited, victim.email, victim.password)  # even the right password, for now
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "detail" in refused.json()
    # Other accounts are not affected by this account's lock.
    other = make_account()
    assert login(limited, other.email, other.password).status_code == 200


def test_a_successful_login_clears_the_account_failures(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    limited = app_with(RATE_LIMIT_ENABLED=True, RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=3)
    account = make_account()
    for _ in range(2):
        assert login(limited, account.email, "wrong password!").status_code == 401
    assert login(limited, account.email, account.password).status_code == 200
    for _ in range(2):
        assert login(limited, account.email, "wrong password!").status_code == 401
    assert login(limited, account.email, account.password).status_code == 200


def test_failed_logins_from_one_address_are_limited_across_accounts(app_with: Callable[..., TestClient]) -> None:
    limited = app_with(
        RATE_LIMIT_ENABLED=True, RATE_LIMIT_FAILED_LOGINS_PER_ADDRESS=4, RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=100
    )
    for n in range(4):
        assert login(limited, f"nobody{n}@example.com", "wrong password!").status_code == 401
    response = login(limited, "nobody-else@example.com", "wrong password!")
    assert response.status_code == 429
    assert "Retry-After" in response.headers


def test_registrations_from_one_address_are_limited(app_with: Callable[..., TestClient]) -> None:
    limited = app_with(RATE_LIMIT_ENABLED=True, RATE_LIMIT_REGISTRATIONS_PER_ADDRESS=3)
    for n in range(3):
        register(limited, f"new{n}@example.com")
    response = limited.post("/users/", json={"email": "one-more@example.com", "password": PASSWORD})
    assert response.status_code == 429
    assert "Retry-After" in response.headers


def test_with_limits_off_nothing_is_refused(client: TestClient, make_account: Callable[..., Account]) -> None:
    account = make_account()
    for _ in range(30):
        assert login(client, account.email, "wrong password!").status_code == 401
    assert login(client, account.email, account.password).status_code == 200


# Nothing listens on port 1.
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing_test"


# --- health ------------------------------------------------------------------------


def test_health_answers_without_the_database(app_with: Callable[..., TestClient]) -> None:
    unreachable = app_with(
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing_test", DATABASE_CONNECT_TIMEOUT_SECONDS=2
    )
    response = unreachable.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_when_the_database_is_at_head(client: TestClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_not_ready_when_the_database_is_unreachable(app_with: Callable[..., TestClient]) -> None:
    unreachable = app_with(
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing_test", DATABASE_CONNECT_TIMEOUT_SECONDS=2
    )
    response = unreachable.get("/ready")
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]


def test_not_ready_when_the_schema_is_behind(
    app_with: Callable[..., TestClient], empty_database: Callable[[], str]
) -> None:
    never_migrated = app_with(DATABASE_URL=empty_database())
    response = never_migrated.get("/ready")
    assert response.status_code == 503
    assert "alembic upgrade head" in response.json()["detail"]


def test_api_requests_fail_fast_with_503_when_the_database_is_unreachable(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    account = make_account()  # a valid token, issued by an app with the same secret
    unreachable = app_with(
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing_test", DATABASE_CONNECT_TIMEOUT_SECONDS=2
    )
    response = unreachable.get("/posts/", headers=account.headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json()["detail"]


# --- HTTP hygiene -------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_json(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    small = app_with(MAX_REQUEST_BODY_BYTES=2048)
    account = make_account()
    response = small.post("/posts/", json={"title": "big", "content": "x" * 4096}, headers=account.headers)
    assert response.status_code == 413
    assert response.json() == {"detail": "Content Too Large"}


def test_the_default_limit_admits_the_largest_valid_post(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    response = client.post("/posts/", json={"title": "t" * 300, "content": "é" * 20_000}, headers=account.headers)
    assert response.status_code == 201, response.text


def test_every_response_carries_a_request_id_and_security_headers(client: TestClient) -> None:
    for response in (client.get("/health"), client.get("/posts/"), client.post("/users/", json={})):
        assert len(response.headers["X-Request-ID"]) == 32
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
    first, second = client.get("/health"), client.get("/health")
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_a_plain_incoming_request_id_is_kept_and_a_strange_one_replaced(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-ID": "abc-123.x_y"}).headers["X-Request-ID"] == "abc-123.x_y"
    replaced = client.get("/health", headers={"X-Request-ID": "evil value\\with stuff" * 10}).headers["X-Request-ID"]
    assert replaced != "evil value\\with stuff" * 10 and len(replaced) == 32


def test_cors_preflight_allows_listed_origins_only(app_with: Callable[..., TestClient]) -> None:
    browser_app = app_with(CORS_ORIGINS="https://app.example.com,http://localhost:3000")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = browser_app.options("/posts/", headers={"Origin": "https://app.example.com", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    refused = browser_app.options("/posts/", headers={"Origin": "https://evil.example.net", **preflight})
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_no_cors_headers_without_configured_origins(client: TestClient) -> None:
    response = client.get("/health", headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_one_structured_access_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="agora.access"):
        response = client.get("/posts/", headers={"X-Request-ID": "trace-me-1"})
    records = [r for r in caplog.records if r.name == "agora.access"]
    assert len(records) == 1
    record = records[0]
    assert (record.method, record.path, record.status) == ("GET", "/posts/", response.status_code)  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    line = json.loads(JsonLogFormatter().format(record))  # one JSON object per line
    assert line["request_id"] == "trace-me-1"
    assert {"time", "level", "method", "path", "status", "duration_ms", "client"} <= line.keys()


class CountingStream(io.StringIO):
    """A text stream that counts the writes it is asked for (each is a system call on stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def access_record(number: int, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("agora.access", level, __file__, 1, "GET /posts/ %d", (number,), None)


def test_log_lines_leave_in_batches_within_the_interval() -> None:
    stream = CountingStream()
    handler = BufferedStreamHandler(stream, interval=0.2)
    try:
        for number in range(50):
            handler.handle(access_record(number))
        assert stream.writes == 0, "an INFO line must not cost a write of its own"
        deadline = time.monotonic() + 5
        while stream.getvalue().count("\n") < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stream.getvalue().splitlines() == [f"GET /posts/ {number}" for number in range(50)]
        assert stream.writes == 1, "the 50 lines must leave together"
    finally:
        handler.close()


def test_warnings_go_out_at_once_with_what_came_before() -> None:
    stream = CountingStream()
    handler = BufferedStreamHandler(stream, interval=3600)
    try:
        handler.handle(access_record(1))
        handler.handle(access_record(2, logging.WARNING))
        assert stream.getvalue().splitlines() == ["GET /posts/ 1", "GET /posts/ 2"]
    finally:
        handler.close()


def test_a_full_batch_and_closing_write_at_once() -> None:
    stream = CountingStream()
    handler = BufferedStreamHandler(stream, interval=3600, max_lines=10)
    for number in range(10):
        handler.handle(access_record(number))
    assert stream.getvalue().count("\n") == 10, "a batch of max_lines must not wait for the interval"
    handler.handle(access_record(10))
    handler.close()
    assert stream.getvalue().splitlines()[-1] == "GET /posts/ 10", "closing must write what is pending"


def test_closing_twice_is_harmless() -> None:
    # uvicorn's logging set-up shuts every existing handler down, and ours closes it again.
    handler = BufferedStreamHandler(CountingStream())
    handler.close()
    handler.close()


def test_another_spelling_of_a_locked_account_is_locked_too(
    app_with: Callable[..., TestClient], sql: Connection
) -> None:
    """'İ' (U+0130): PostgreSQL's lower() finds iriswpzp@…, Python's lower() made another limiter key of it."""
    limited = app_with(RATE_LIMIT_ENABLED=True, RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=5)
    register(limited, "iriswpzp@example.com")
    for _ in range(5):
        assert login(limited, "iriswpzp@example.com", "wrong password!").status_code == 401
    spellings = ["iriswpzp@example.com", "IRISWPZP@example.com", "İriswpzp@example.com", "iriswpzp@EXAMPLE.COM"]
    answers = {spelling: login(limited, spelling, PASSWORD).status_code for spelling in spellings}
    # Refused whatever the spelling: 429 where the database finds the account by it, 401 where it does not.
    assert all(status in (401, 429) for status in answers.values()), answers
    assert answers["iriswpzp@example.com"] == answers["IRISWPZP@example.com"] == 429


def test_every_failed_login_takes_as_long_whatever_the_account_holds(
    app_with: Callable[..., TestClient], sql: Connection
) -> None:
    """Real costs: a bcrypt-12 account (as adopted from the course app), an Argon2id one, "!" and no account."""
    bcrypt_hash = BcryptHasher(rounds=12).hash(PASSWORD)
    sql.execute(text("INSERT INTO users (email, password) VALUES ('course@example.com', :h)"), {"h": bcrypt_hash})
    sql.execute(text("INSERT INTO users (email, password) VALUES ('locked@example.com', '!')"))
    # Built after the bcrypt account exists, as after an adoption: its floor covers bcrypt-12.
    app = app_with(ARGON2_TIME_COST=2, ARGON2_MEMORY_COST_KIB=19456)
    register(app, "argon@example.com")
    cases = ["course@example.com", "argon@example.com", "locked@example.com", "nobody@example.com"]

    def timed(email: str) -> float:
        started = time.perf_counter()
        assert login(app, email, "wrong password!").status_code == 401
        return time.perf_counter() - started

    timed(cases[0])  # warm up
    medians = {email: statistics.median(timed(email) for _ in range(3)) for email in cases}
    fastest, slowest = min(medians.values()), max(medians.values())
    assert slowest / fastest < 1.25, medians
    assert fastest >= 0.8 * app.app.state.passwords.failure_floor_seconds, medians  # type: ignore[attr-defined]


# --- load shedding ------------------------------------------------------------------


def test_past_the_bound_a_request_waits_in_line_then_gets_503_and_health_still_answers() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/posts/":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    admission = Admission(2, wait_seconds=0.3)
    middleware = RequestContextMiddleware(slow_app, max_body_bytes=1024, access_log=False, admission=admission)

    async def call(path: str) -> tuple[int, dict[bytes, bytes]]:
        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "client": ("1.2.3.4", 1)}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await middleware(scope, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    async def scenario() -> None:
        held = [asyncio.create_task(call("/posts/")) for _ in range(2)]
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        status, headers = await call("/posts/")  # the third waits its turn, then gives up
        waited = time.perf_counter() - started
        assert (status, headers[b"retry-after"]) == (503, b"1")
        assert 0.25 < waited < 1.0, waited
        assert (await call("/health"))[0] == 200  # admitted whatever the load
        in_line = asyncio.create_task(call("/other"))  # waits for a slot ...
        await asyncio.sleep(0.05)
        release.set()  # ... and gets the one the first finished request frees
        assert [(await task)[0] for task in held] == [200, 200]
        assert (await in_line)[0] == 200
        assert admission.in_flight == 0
        assert (await call("/posts/"))[0] == 200  # room again

    asyncio.run(scenario())


def test_admission_is_first_come_first_served_and_never_loses_a_slot() -> None:
    async def scenario() -> None:
        admission = Admission(1, wait_seconds=5)
        assert await admission.enter()
        order: list[int] = []

        async def wait(n: int) -> None:
            assert await admission.enter()
            order.append(n)
            await asyncio.sleep(0)
            admission.leave()

        waiters = [asyncio.create_task(wait(n)) for n in range(5)]
        await asyncio.sleep(0.01)
        admission.leave()
        await asyncio.gather(*waiters)
        assert order == [0, 1, 2, 3, 4]
        assert admission.in_flight == 0

        # A wait that times out as its slot arrives passes the slot on instead of keeping it.
        short = Admission(1, wait_seconds=0.05)
        assert await short.enter()
        assert not await short.enter()
        short.leave()
        assert short.in_flight == 0

    asyncio.run(scenario())
