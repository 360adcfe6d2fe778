"""Settings: the only place that reads the environment (and `.env`).

`create_app(settings)` passes one `Settings` down to everything the app builds; no module
reads the environment at request time. Tools outside the app (Alembic's env.py, the run
command) call `Settings()` themselves.
"""

import secrets
from functools import cached_property
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{REPO_ROOT / 'agora.db'}"

# Values that must never sign tokens in production (they are published in docs).
PLACEHOLDER_SECRET_KEYS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "secret",
        "please-change-me",
        "replace-me-with-at-least-32-random-bytes",
    }
)
MIN_SECRET_KEY_BYTES = 32
# Loopback and private ranges: who may read /metrics unless METRICS_ALLOWED_NETWORKS says otherwise.
DEFAULT_METRICS_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


def driver_urls(raw_url: str) -> tuple[URL, URL]:
    """Derive the URLs of the drivers we install from the one URL a user sets.

    Alembic runs on sync drivers (stdlib sqlite3, psycopg 3); the application on
    async ones (aiosqlite, asyncpg). `postgres://` (Heroku style) and any driver
    suffix the user typed are normalised, because SQLAlchemy 2.1 maps a bare
    `postgresql://` to psycopg and knows no `postgres://` dialect at all.
    """
    url = make_url(raw_url.replace("postgres://", "postgresql://", 1) if raw_url.startswith("postgres://") else raw_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite"), url.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        sync_url = url.set(drivername="postgresql+psycopg")
        query = dict(url.query)
        # asyncpg spells libpq's `sslmode` as `ssl`.
        if "sslmode" in query:
            query["ssl"] = query.pop("sslmode")
        return sync_url, url.set(drivername="postgresql+asyncpg", query=query)
    raise ValueError(f"DATABASE_URL must be a sqlite:// or postgresql:// URL, got {backend}://")


def rate_limit_storage_scheme(url: str) -> str:
    """RATE_LIMIT_STORAGE_URL's scheme (memory, redis or rediss); ValueError, saying why, for any other URL.

    The messages leave out the setting's name: pydantic puts it before them.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("memory", "redis", "rediss") or "://" not in url:
        raise ValueError(
            "must be memory:// or redis://host:port/db (rediss:// for TLS), "
            f"got {scheme + '://' if scheme else repr(url)}"
        )
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ValueError("memory:// takes nothing after the scheme")
        return scheme
    try:
        parts.port  # noqa: B018 (raises ValueError when the port is not a number)
    except ValueError:
        raise ValueError("the port of a redis:// URL must be a number") from None
    if not parts.hostname:
        raise ValueError("a redis:// URL needs a host (redis://host:port/db)")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError("the path of a redis:// URL is a database number (redis://host:port/0)")
    return scheme


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    ENVIRONMENT: Literal["development", "test", "production"] = "development"
    DATABASE_URL: str = DEFAULT_DATABASE_URL
    # Most PostgreSQL connections one worker process opens (as requests need them).
    # Small on purpose: a connection is held only while a statement runs, and more
    # statements at once than PostgreSQL has cores only lengthens the slowest (README,
    # "Production"). workers x pool must stay below PostgreSQL's max_connections.
    DATABASE_POOL_SIZE: int = Field(default=4, ge=1)
    # Of those, how many reads may never take: kept for INSERT, UPDATE and DELETE, so
    # reads that turn slow (a feed without its indexes, a costly search) cannot starve
    # writes of connections. PostgreSQL only; 0 turns it off. Less than the pool size.
    DATABASE_WRITE_RESERVE: int = Field(default=1, ge=0)
    # Fail fast when PostgreSQL is down, stalled or slow: waiting for a pooled
    # connection, opening one, and any single statement are all bounded.
    DATABASE_POOL_TIMEOUT_SECONDS: float = Field(default=5, gt=0)
    DATABASE_CONNECT_TIMEOUT_SECONDS: float = Field(default=5, gt=0)
    DATABASE_STATEMENT_TIMEOUT_MS: int = Field(default=5000, ge=1)
    # Each statement of a search (`?search=`) is stopped after this long, and the request
    # answered 503, instead of holding a connection for seconds: a search the grams index
    # cannot narrow (a rare pair of letters, or pieces every title holds) reads every title,
    # 1-2.5 s on a million posts. 500 ms: ten times the feed's p99 target, and far above what
    # the searches the index serves cost (a few ms of database time each, bench/README.md).
    # Time spent waiting for a connection does not count.
    SEARCH_TIMEOUT_MS: int = Field(default=500, gt=0)
    # Hot standbys of DATABASE_URL's PostgreSQL (comma-separated postgresql:// URLs) that
    # serve the feed, search and single-post reads; a user's reads go to the primary
    # until a standby has replayed that user's last write (README, "Read replicas").
    DATABASE_READ_URL: str = ""
    # A standby further behind the primary than this serves nothing until it catches up.
    DATABASE_READ_MAX_LAG_SECONDS: float = Field(default=5, gt=0)
    # DATABASE_URL (and DATABASE_READ_URL) lead to PgBouncer in transaction pooling: no
    # startup parameters, no prepared-statement cache, the statement timeout enforced
    # by the client (README, "Behind PgBouncer"). Needs MIGRATION_DATABASE_URL.
    DATABASE_BEHIND_PGBOUNCER: bool = False
    # Where Alembic connects when not DATABASE_URL: PostgreSQL itself, not PgBouncer
    # (a migration holds a session: an advisory lock, its lock_timeout).
    MIGRATION_DATABASE_URL: str = ""
    # How long a migration waits for a table lock before giving up cleanly (PostgreSQL).
    MIGRATION_LOCK_TIMEOUT_MS: int = Field(default=3000, ge=1)

    # FastAPI's built-in OpenTelemetry instrumentation; off unless you export traces
    # or metrics (it costs a few percent of every request even with nothing configured).
    TELEMETRY_ENABLED: bool = False

    # Prometheus metrics at GET /metrics (app/http/metrics.py, README "Metrics"). Only clients
    # in METRICS_ALLOWED_NETWORKS may read them (the address uvicorn gives the request: the
    # peer's, or X-Forwarded-For's from a proxy in FORWARDED_ALLOW_IPS); any other gets the
    # 404 of an unknown path. With METRICS_TOKEN set, also only with `Authorization: Bearer <it>`.
    METRICS_ENABLED: bool = True
    METRICS_ALLOWED_NETWORKS: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=lambda: [ip_network(n) for n in DEFAULT_METRICS_NETWORKS]
    )
    METRICS_TOKEN: str = ""

    SECRET_KEY: str = ""
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=30, ge=1)
    CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    MAX_REQUEST_BODY_BYTES: int = Field(default=256 * 1024, ge=1024)
    # Load shedding (app/http/admission.py): requests one worker serves at once; past it a
    # request waits in line at most ADMISSION_WAIT_SECONDS, then gets 503 + Retry-After.
    # /health is always answered. 0 switches the bound off.
    MAX_REQUESTS_IN_FLIGHT: int = Field(default=128, ge=0)
    ADMISSION_WAIT_SECONDS: float = Field(default=0.5, gt=0)
    ACCESS_LOG_ENABLED: bool = True
    # Whether every logged-in user sees every author's email address (in each post's
    # `owner` and at GET /users/{id}), as the course contract does. false: only your own;
    # others' are null (README, "Email addresses"). Production deployments should say false.
    PUBLIC_EMAILS: bool = True

    # Brute-force protection (app/domain/ratelimit.py). Off for benchmarks and black-box
    # runs that log in many users from one address.
    RATE_LIMIT_ENABLED: bool = True
    # Where the limits count: memory:// in each worker process (W workers, W times each
    # limit), or redis://host:port/db (rediss:// for TLS) shared by every worker and host.
    # Unreachable Redis: requests go through unlimited, logged, and /ready says degraded.
    RATE_LIMIT_STORAGE_URL: str = "memory://"
    RATE_LIMIT_WINDOW_SECONDS: int = Field(default=60, ge=1)
    RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT: int = Field(default=5, ge=1)
    RATE_LIMIT_FAILED_LOGINS_PER_ADDRESS: int = Field(default=20, ge=1)
    RATE_LIMIT_REGISTRATIONS_PER_ADDRESS: int = Field(default=10, ge=1)

    # Argon2id cost: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane). One lane
    # keeps a login on one core: with 4 lanes (RFC 9106's low-memory profile) each
    # login took both cores of our benchmark machine and doubled the feed's p99.
    # Tests lower them, nothing else should; stored hashes are upgraded at login.
    ARGON2_TIME_COST: int = Field(default=2, ge=1)
    ARGON2_MEMORY_COST_KIB: int = Field(default=19456, ge=8)
    ARGON2_PARALLELISM: int = Field(default=1, ge=1)

    _secret_key_is_ephemeral: bool = PrivateAttr(default=False)

    @model_validator(mode="before")
    @classmethod
    def _split_cors_origins(cls, data: dict[str, object]) -> dict[str, object]:
        origins = data.get("CORS_ORIGINS")
        if isinstance(origins, str):
            data["CORS_ORIGINS"] = [o.strip() for o in origins.split(",") if o.strip()]
        return data

    @field_validator("RATE_LIMIT_STORAGE_URL")
    @classmethod
    def _check_rate_limit_storage(cls, value: str) -> str:
        rate_limit_storage_scheme(value)  # fail at start-up, not at the first login
        return value

    @field_validator("METRICS_ALLOWED_NETWORKS", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        return [n.strip() for n in value.split(",") if n.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_secret_and_origins(self) -> "Settings":
        if "*" in self.CORS_ORIGINS:
            raise ValueError("CORS_ORIGINS must list origins explicitly; '*' is refused (credentials are allowed)")
        weak = (
            self.SECRET_KEY.lower() in PLACEHOLDER_SECRET_KEYS or len(self.SECRET_KEY.encode()) < MIN_SECRET_KEY_BYTES
        )
        if weak and self.ENVIRONMENT == "production":
            raise ValueError(
                "SECRET_KEY is missing, a placeholder or shorter than 32 bytes; "
                'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        if weak:
            # Development convenience; the application warns loudly at start-up.
            self.SECRET_KEY = secrets.token_urlsafe(48)
            self._secret_key_is_ephemeral = True
        driver_urls(self.DATABASE_URL)  # fail at start-up, not at first query
        return self

    @model_validator(mode="after")
    def _check_search_timeout(self) -> "Settings":
        # A search timeout at or past the statement timeout would never be the one that stops a search.
        if self.SEARCH_TIMEOUT_MS >= self.DATABASE_STATEMENT_TIMEOUT_MS:
            raise ValueError(
                f"SEARCH_TIMEOUT_MS ({self.SEARCH_TIMEOUT_MS}) must be shorter than "
                f"DATABASE_STATEMENT_TIMEOUT_MS ({self.DATABASE_STATEMENT_TIMEOUT_MS})"
            )
        return self

    @model_validator(mode="after")
    def _check_replicas_and_pgbouncer(self) -> "Settings":
        on_postgresql = driver_urls(self.DATABASE_URL)[0].get_backend_name() == "postgresql"
        for url in self.read_database_urls:
            if url.get_backend_name() != "postgresql" or not on_postgresql:
                raise ValueError("DATABASE_READ_URL lists hot standbys of DATABASE_URL: postgresql:// URLs only")
        if self.MIGRATION_DATABASE_URL:
            driver_urls(self.MIGRATION_DATABASE_URL)
        if self.DATABASE_BEHIND_PGBOUNCER and not on_postgresql:
            raise ValueError("DATABASE_BEHIND_PGBOUNCER needs a postgresql:// DATABASE_URL (PgBouncer's address)")
        if self.DATABASE_BEHIND_PGBOUNCER and not self.MIGRATION_DATABASE_URL:
            raise ValueError(
                "DATABASE_BEHIND_PGBOUNCER needs MIGRATION_DATABASE_URL, a postgresql:// URL of the primary itself: "
                "migrations hold a session (advisory lock, lock_timeout) that transaction pooling does not keep"
            )
        return self

    @cached_property
    def read_database_urls(self) -> tuple[URL, ...]:
        """DATABASE_READ_URL's standbys, for the application (asyncpg)."""
        return tuple(driver_urls(url.strip())[1] for url in self.DATABASE_READ_URL.split(",") if url.strip())

    @property
    def secret_key_is_ephemeral(self) -> bool:
        """True when no usable SECRET_KEY was set and a random one stands in."""
        return self._secret_key_is_ephemeral

    @cached_property
    def sync_database_url(self) -> URL:
        """URL for Alembic and other synchronous tools (sqlite3 / psycopg): MIGRATION_DATABASE_URL when set."""
        return driver_urls(self.MIGRATION_DATABASE_URL or self.DATABASE_URL)[0]

    @cached_property
    def async_database_url(self) -> URL:
        """URL for the application (aiosqlite / asyncpg)."""
        return driver_urls(self.DATABASE_URL)[1]


def settings_or_exit() -> Settings:
    """Settings from the environment, or exit with one line saying what is wrong (for commands)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            where = ".".join(map(str, error["loc"]))
            problems.append(f"{where}: {message}" if where else message)
        raise SystemExit(f"error: invalid settings: {'; '.join(problems)}") from None
