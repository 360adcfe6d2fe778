"""Password hashing and access tokens: no I/O, no web framework, no global settings.

`Passwords` and `Tokens` are built from the app's `Settings` by `create_app` (one of each
per app), so an app built with another SECRET_KEY or Argon2 cost uses exactly those.
"""

import asyncio
import functools
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from anyio.to_thread import run_sync
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from app.config import Settings

TOKEN_ALGORITHM = "HS256"
# A token's `sub` is a user id written as we write it: plain digits, no sign or leading zero.
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
USER_ID_MAX = 2**63 - 1
# Slack on the lifetime a token may claim (a lifetime shortened since it was issued, rounding).
CLOCK_LEEWAY_SECONDS = 30


class Passwords:
    """Argon2id for every new hash; bcrypt ($2b$, what the course app stores) is still
    verified, and `verify` returns a replacement Argon2id hash for it."""

    def __init__(self, *, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHash(
            (Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism), BcryptHasher())
        )
        # Verified against when the email is unknown, so that a wrong email costs the same
        # time as a wrong password and login timing does not reveal who has an account.
        self.dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self._failure_floor: float | None = None
        self._bcrypt_rounds: int | None = None  # the costliest bcrypt the floor covers

    @classmethod
    def from_settings(cls, settings: Settings) -> "Passwords":
        return cls(
            time_cost=settings.ARGON2_TIME_COST,
            memory_cost_kib=settings.ARGON2_MEMORY_COST_KIB,
            parallelism=settings.ARGON2_PARALLELISM,
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Check a password; the second item is a new hash to store, when one is due.

        Unusable stored values (e.g. "!" for accounts nobody may log in to) and inputs
        bcrypt refuses (more than 72 bytes) simply do not match.
        """
        self._cover(password_hash)
        try:
            return self._hasher.verify_and_update(password, password_hash)
        except (UnknownHashError, ValueError):
            return False, None

    def spend_check_time(self, password: str) -> None:
        """Do the work of a failed verification without any account."""
        self._hasher.verify(password, self.dummy_hash)

    @property
    def failure_floor_seconds(self) -> float:
        """How long every failed login takes at least: the slowest verification a stored hash needs.

        Stored hashes differ in cost: Argon2id at our cost, bcrypt at the cost the course app
        stored it with (12: about 10 times slower), and values that are no hash at all ("!"),
        which cost nothing. Without a floor, the time of a 401 told which kind an account
        holds, or whether it exists. Set by `calibrate`, in a worker thread.
        """
        if self._failure_floor is None:
            self.calibrate()
        assert self._failure_floor is not None
        return self._failure_floor

    def calibrate(self, bcrypt_rounds: int | None = None) -> None:
        """Time a failed verification of our Argon2id hash and, if some accounts still hold
        bcrypt hashes, of a bcrypt hash of `bcrypt_rounds`; blocking (up to about 0.5 s)."""
        slowest = _time_failed_verification(self._hasher, self.dummy_hash)
        if bcrypt_rounds is not None:
            slowest = max(slowest, _time_failed_verification(self._hasher, _bcrypt_dummy_hash(bcrypt_rounds)))
            self._bcrypt_rounds = max(self._bcrypt_rounds or 0, bcrypt_rounds)
        self._failure_floor = max(self._failure_floor or 0.0, FAILURE_FLOOR_MARGIN * slowest)

    async def pad_failure(self, started: float) -> None:
        """Sleep (without using the CPU) until the failure floor has passed since `started` (perf_counter)."""
        floor = self._failure_floor
        if floor is None:
            await run_sync(self.calibrate)
            floor = self.failure_floor_seconds
        remaining = floor - (time.perf_counter() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _cover(self, password_hash: str) -> None:
        """Raise the floor for a bcrypt hash costlier than any seen at calibration (blocking)."""
        rounds = bcrypt_rounds(password_hash)
        if rounds is not None and rounds > (self._bcrypt_rounds or 0):
            self.calibrate(rounds)


def bcrypt_rounds(password_hash: str) -> int | None:
    """The cost of a bcrypt hash (`$2b$12$...` is 12), or None for anything else."""
    match = _BCRYPT_PREFIX.match(password_hash)
    return int(match[1]) if match else None


_BCRYPT_PREFIX = re.compile(r"\$2[abxy]\$([0-9]{2})\$")


# A failed login is answered no sooner than this many times the slowest verification
# measured: room for the variation between two verifications of the same cost.
FAILURE_FLOOR_MARGIN = 1.25
# The bcrypt cost the course app (passlib's default) stored its hashes with.
COURSE_BCRYPT_ROUNDS = 12


@functools.cache
def _bcrypt_dummy_hash(rounds: int) -> str:
    return BcryptHasher(rounds=rounds).hash(secrets.token_urlsafe(16))


def _time_failed_verification(hasher: PasswordHash, password_hash: str) -> float:
    started = time.perf_counter()
    hasher.verify("not the password", password_hash)
    return time.perf_counter() - started


# What `jti` looks like as we issue it: 16 random bytes in URL-safe base64, no padding.
TOKEN_ID_BYTES = 16
_TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# A generation is compared with an INTEGER column (users.token_generation).
GENERATION_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a valid token says: whose it is, the account's token generation when it was
    issued, its own id (for logging it out alone), and when it expires (Unix time)."""

    user_id: int
    generation: int
    jti: str
    expires_at: int


def create_access_token(
    user_id: int,
    *,
    generation: int,
    secret_key: str,
    expires_in: timedelta,
    now: datetime | None = None,
    jti: str | None = None,
) -> str:
    issued_at = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iat": issued_at,
        "exp": issued_at + expires_in,
        "gen": generation,
        "jti": jti if jti is not None else secrets.token_urlsafe(TOKEN_ID_BYTES),
    }
    return jwt.encode(claims, secret_key, algorithm=TOKEN_ALGORITHM)


def decode_access_token(token: str, *, secret_key: str, lifetime: timedelta) -> VerifiedToken | None:
    """What a valid token says, or None for anything else.

    The algorithm is pinned (no `alg: none`, no key confusion); `sub`, `iat`, `exp`, `gen`
    and `jti` are required with exactly the types we issue (a string user id in plain
    digits, integer times, an integer generation from 0 to 2**31-1, a 22-character
    URL-safe id), `iat` may not lie in the future, and `exp` may lie no further from `iat`
    than the configured lifetime plus CLOCK_LEEWAY_SECONDS: a token signed with the right
    key but claims we never write (`exp` as a string or 10**30, `sub` "0001", `gen` -1) is
    refused. So are tokens issued before generations existed (no `gen`): their users log
    in again once.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret_key, algorithms=[TOKEN_ALGORITHM], options={"require": ["sub", "iat", "exp", "gen", "jti"]}
        )
    except jwt.InvalidTokenError:
        return None
    subject, issued_at, expires_at = claims["sub"], claims["iat"], claims["exp"]
    generation, token_id = claims["gen"], claims["jti"]
    if not (isinstance(subject, str) and _USER_ID.fullmatch(subject) and int(subject) <= USER_ID_MAX):
        return None
    if type(issued_at) is not int or type(expires_at) is not int:
        return None
    if expires_at - issued_at > lifetime.total_seconds() + CLOCK_LEEWAY_SECONDS:
        return None
    if type(generation) is not int or not 0 <= generation <= GENERATION_MAX:
        return None
    if not (isinstance(token_id, str) and _TOKEN_ID.fullmatch(token_id)):
        return None
    return VerifiedToken(int(subject), generation, token_id, expires_at)


class Tokens:
    """Issues and checks one app's access tokens, remembering the ones it verified.

    A client sends the same token with every request, and decoding it again (base64,
    JSON, HMAC, claims) was about 6 % of the time of a GET. Only valid tokens are
    remembered, so filling the memo takes logins, not forged tokens; past `memo_size`
    the oldest entries make room.

    Whether a token has been revoked (a password change, a logout) is not known here: it
    is in the database, and every statement a protected endpoint runs checks it in the
    same round trip (app/domain/viewer.py). So a remembered token is refused the moment
    it is revoked, on every worker and host, and nothing here needs invalidating.
    """

    def __init__(self, *, secret_key: str, lifetime: timedelta, memo_size: int = 10_000) -> None:
        self._secret_key = secret_key
        self.lifetime = lifetime
        self._memo_size = memo_size
        self._verified: dict[str, VerifiedToken] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> "Tokens":
        return cls(secret_key=settings.SECRET_KEY, lifetime=timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES))

    def issue(self, user_id: int, generation: int, now: datetime | None = None) -> str:
        """A new token for the account at its current token generation (a fresh random `jti` each time)."""
        return create_access_token(
            user_id, generation=generation, secret_key=self._secret_key, expires_in=self.lifetime, now=now
        )

    def verify(self, token: str) -> VerifiedToken | None:
        """What a valid token says, or None (bad signature, expired, malformed)."""
        verified = self._verified.get(token)
        if verified is None:
            verified = decode_access_token(token, secret_key=self._secret_key, lifetime=self.lifetime)
            if verified is None:
                return None
            if len(self._verified) >= self._memo_size:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = verified
        # What PyJWT would check again: the signature and `iat` cannot change, the clock can.
        return verified if time.time() < verified.expires_at else None

    def user_id(self, token: str) -> int | None:
        """The user id a valid token names, or None."""
        verified = self.verify(token)
        return verified.user_id if verified is not None else None
