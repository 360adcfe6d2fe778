"""Password hashing and access tokens: no I/O, no framework (only a memo of verified tokens)."""

import secrets
import time
from datetime import UTC, datetime, timedelta

import jwt
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from app.config import settings

TOKEN_ALGORITHM = "HS256"

# Argon2id for every new hash; bcrypt ($2b$, what the course app stores) is still
# verified, and `verify_password` returns a replacement Argon2id hash for it.
password_hasher = PasswordHash(
    (
        Argon2Hasher(
            time_cost=settings.ARGON2_TIME_COST,
            memory_cost=settings.ARGON2_MEMORY_COST_KIB,
            parallelism=settings.ARGON2_PARALLELISM,
        ),
        BcryptHasher(),
    )
)

# Verified against when the email is unknown, so that a wrong email costs the same
# time as a wrong password and login timing does not reveal who has an account.
DUMMY_PASSWORD_HASH = password_hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return password_hasher.hash(password)


def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Check a password; the second item is a new hash to store, when one is due.

    Unusable stored values (e.g. "!" for accounts nobody may log in to) and inputs
    bcrypt refuses (more than 72 bytes) simply do not match.
    """
    try:
        return password_hasher.verify_and_update(password, password_hash)
    except (UnknownHashError, ValueError):
        return False, None


def spend_password_check_time(password: str) -> None:
    """Do the work of a failed verification without any account."""
    password_hasher.verify(password, DUMMY_PASSWORD_HASH)


def create_access_token(user_id: int, *, secret_key: str, expires_in: timedelta, now: datetime | None = None) -> str:
    issued_at = now or datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": issued_at, "exp": issued_at + expires_in}
    return jwt.encode(claims, secret_key, algorithm=TOKEN_ALGORITHM)


def user_id_from_token(token: str, *, secret_key: str) -> int | None:
    """The user id a valid token names, or None for anything else.

    The algorithm is pinned (no `alg: none`, no key confusion) and `sub`, `iat` and
    `exp` are all required.
    """
    verified = _verified_tokens.get((token, secret_key))
    if verified is not None:
        user_id, expires_at = verified
        # What PyJWT would check again: the signature and `iat` cannot change, the clock can.
        return user_id if time.time() < expires_at else None
    try:
        claims = jwt.decode(token, secret_key, algorithms=[TOKEN_ALGORITHM], options={"require": ["sub", "iat", "exp"]})
    except jwt.InvalidTokenError:
        return None
    subject = claims["sub"]
    if not (isinstance(subject, str) and subject.isascii() and subject.isdigit() and len(subject) <= 19):
        return None
    remember_verified_token((token, secret_key), (int(subject), int(claims["exp"])))
    return int(subject)


# Tokens that passed the full check, with their user id and expiry. A client sends the
# same token with every request, and decoding it again (base64, JSON, HMAC, claims)
# was about 6 % of the time of a GET. Only valid tokens get in, so filling this takes
# logins, not forged tokens; past the size limit the oldest entries make room.
VERIFIED_TOKENS_MAX = 10_000
_verified_tokens: dict[tuple[str, str], tuple[int, float]] = {}


def remember_verified_token(key: tuple[str, str], value: tuple[int, float]) -> None:
    if len(_verified_tokens) >= VERIFIED_TOKENS_MAX:
        del _verified_tokens[next(iter(_verified_tokens))]
    _verified_tokens[key] = value
