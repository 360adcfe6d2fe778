"""Settings: refusing unsafe production configuration, CORS origins, and database URLs."""

import logging
import os
import secrets
import subprocess
import sys
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.config import REPO_ROOT, Settings, driver_urls
from app.main import create_app

STRONG_KEY = secrets.token_urlsafe(48)


def make_settings(**values: Any) -> Settings:
    """Settings from keyword arguments and the environment only (never a developer's .env file)."""
    return Settings(_env_file=None, **values)


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest sets ENVIRONMENT and SECRET_KEY for the app under test; these tests choose their own."""
    for name in ("ENVIRONMENT", "SECRET_KEY", "CORS_ORIGINS", "ACCESS_TOKEN_EXPIRE_MINUTES"):
        monkeypatch.delenv(name, raising=False)


# --- the secret key ----------------------------------------------------------------


def test_production_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make_settings(ENVIRONMENT="production")


def test_production_reads_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make_settings()
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    assert make_settings().SECRET_KEY == STRONG_KEY


@pytest.mark.parametrize(
    "key",
    [
        "",
        "changeme",
        "CHANGEME",
        "change-me",
        "secret",
        "please-change-me",
        "replace-me-with-at-least-32-random-bytes",  # published in the docs: long enough, still refused
        "k" * 31,
        "é" * 15,  # 30 bytes
    ],
)
def test_production_refuses_a_placeholder_or_short_secret_key(key: str) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make_settings(ENVIRONMENT="production", SECRET_KEY=key)


@pytest.mark.parametrize("key", [STRONG_KEY, "k" * 32, "é" * 16], ids=["random", "32-ascii", "32-bytes-in-16-chars"])
def test_production_accepts_a_key_of_32_bytes_or_more(key: str) -> None:
    configured = make_settings(ENVIRONMENT="production", SECRET_KEY=key)
    signing_key = configured.SECRET_KEY
    assert signing_key == key
    assert not configured.secret_key_is_ephemeral


def test_development_without_a_key_uses_a_random_one_per_process() -> None:
    first = make_settings(ENVIRONMENT="development")
    second = make_settings(ENVIRONMENT="development")

    assert first.secret_key_is_ephemeral and second.secret_key_is_ephemeral
    assert len(first.SECRET_KEY.encode()) >= 32
    assert first.SECRET_KEY != second.SECRET_KEY


def test_development_with_a_placeholder_key_does_not_sign_with_it() -> None:
    configured = make_settings(ENVIRONMENT="development", SECRET_KEY="changeme")
    assert configured.SECRET_KEY != "changeme"
    assert configured.secret_key_is_ephemeral


def test_development_warns_loudly_at_start_up_without_a_key(caplog: pytest.LogCaptureFixture) -> None:
    application = create_app(make_settings(ENVIRONMENT="development", SECRET_KEY=""))
    with caplog.at_level(logging.WARNING), TestClient(application):
        pass
    assert any(record.levelno >= logging.WARNING and "SECRET_KEY" in record.getMessage() for record in caplog.records)


def test_the_token_lifetime_defaults_to_30_minutes() -> None:
    assert make_settings().ACCESS_TOKEN_EXPIRE_MINUTES == 30
    assert make_settings(ACCESS_TOKEN_EXPIRE_MINUTES=5).ACCESS_TOKEN_EXPIRE_MINUTES == 5


# --- CORS --------------------------------------------------------------------------


@pytest.mark.parametrize("origins", ["*", "https://app.example,*", " * ", ["*"], ["https://app.example", "*"]])
def test_a_wildcard_cors_origin_is_refused(origins: str | list[str]) -> None:
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        make_settings(CORS_ORIGINS=origins)


def test_a_wildcard_cors_origin_is_refused_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "*")
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        make_settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://app.example", ["https://app.example"]),
        ("https://app.example,http://localhost:3000", ["https://app.example", "http://localhost:3000"]),
        (" https://app.example , http://localhost:3000 ,", ["https://app.example", "http://localhost:3000"]),
        ("", []),
    ],
)
def test_comma_separated_cors_origins_are_parsed(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    from_argument = make_settings(CORS_ORIGINS=raw).CORS_ORIGINS
    monkeypatch.setenv("CORS_ORIGINS", raw)
    from_environment = make_settings().CORS_ORIGINS
    assert from_argument == from_environment == expected


def test_cors_answers_only_the_listed_origins() -> None:
    application = create_app(make_settings(CORS_ORIGINS="https://app.example"))
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    client = TestClient(application)  # no lifespan: CORS is answered before any route or database

    allowed = client.options("/posts/", headers={"Origin": "https://app.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"

    refused = client.options("/posts/", headers={"Origin": "https://evil.example", **preflight})
    assert refused.headers.get("access-control-allow-origin") not in ("*", "https://evil.example")


# --- database URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://agora:s3cret@db.example:5433/agora",
        "postgresql://agora:s3cret@db.example:5433/agora",
        "postgresql+psycopg2://agora:s3cret@db.example:5433/agora",
        "postgresql+asyncpg://agora:s3cret@db.example:5433/agora",
    ],
)
def test_postgresql_urls_get_psycopg_for_sync_and_asyncpg_for_async(raw: str) -> None:
    sync_url, async_url = driver_urls(raw)

    assert sync_url.drivername == "postgresql+psycopg"
    assert async_url.drivername == "postgresql+asyncpg"
    for url in (sync_url, async_url):
        assert (url.username, url.password, url.host, url.port, url.database) == (
            "agora",
            "s3cret",
            "db.example",
            5433,
            "agora",
        )


def test_settings_derive_both_urls_from_one_database_url() -> None:
    configured = make_settings(DATABASE_URL="postgres://agora@db.example/agora")
    assert configured.sync_database_url.drivername == "postgresql+psycopg"
    assert configured.async_database_url.drivername == "postgresql+asyncpg"
    assert configured.async_database_url.database == "agora"


@pytest.mark.parametrize(
    ("raw", "database"),
    [("sqlite:///./agora.db", "./agora.db"), ("sqlite:////var/lib/agora/agora.db", "/var/lib/agora/agora.db")],
)
def test_sqlite_urls_get_sqlite3_for_sync_and_aiosqlite_for_async(raw: str, database: str) -> None:
    sync_url, async_url = driver_urls(raw)
    assert sync_url.drivername == "sqlite"
    assert async_url.drivername == "sqlite+aiosqlite"
    assert sync_url.database == async_url.database == database


@pytest.mark.parametrize("raw", ["mysql://agora@db.example/agora", "oracle://x@y/z"])
def test_other_databases_are_refused_at_start_up(raw: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        driver_urls(raw)
    with pytest.raises(ValidationError):
        make_settings(DATABASE_URL=raw)


# --- settings are passed down, never read from a global --------------------------------------


def test_an_app_signs_and_checks_tokens_with_its_own_settings(client: TestClient) -> None:
    """create_app(settings) uses those settings for tokens and hashing too (not the environment's)."""
    own = make_settings(
        DATABASE_URL=client.app.state.settings.DATABASE_URL,  # type: ignore[attr-defined]
        SECRET_KEY=STRONG_KEY,
        ACCESS_TOKEN_EXPIRE_MINUTES=7,
        ARGON2_TIME_COST=1,
        ARGON2_MEMORY_COST_KIB=16,
    )
    with TestClient(create_app(own)) as other:
        created = other.post("/users/", json={"email": "own@example.com", "password": "long enough"})
        assert created.status_code == 201, created.text
        token = other.post("/login", data={"username": "own@example.com", "password": "long enough"}).json()
        claims = jwt.decode(token["access_token"], STRONG_KEY, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] == 7 * 60
        assert other.get("/users/me", headers={"Authorization": f"Bearer {token['access_token']}"}).status_code == 200
        # The suite's app (another key) refuses it; this app refuses the suite's tokens.
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert client.get("/users/me", headers=headers).status_code == 401
        stored = other.app.state.passwords.hash("x")  # type: ignore[attr-defined]
        assert "m=16,t=1" in stored


def test_no_module_keeps_a_settings_object_of_its_own() -> None:
    import app.config
    import app.security

    assert not hasattr(app.config, "settings")
    assert not any(isinstance(value, Settings) for value in vars(app.security).values())


# --- commands refuse a bad configuration in one line -----------------------------------------


def run_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ENVIRONMENT")}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env={**environment, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", [("-m", "app", "--no-migrate"), ("-m", "alembic", "current")])
def test_a_refused_production_start_is_one_line_and_a_failure(command: tuple[str, ...]) -> None:
    result = run_command(*command, ENVIRONMENT="production")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: invalid settings:") and "SECRET_KEY" in lines[0]
    assert "Traceback" not in result.stderr


def test_help_needs_no_settings() -> None:
    result = run_command("-m", "app", "--help", ENVIRONMENT="production")
    assert result.returncode == 0, result.stderr
    assert "--no-migrate" in result.stdout
