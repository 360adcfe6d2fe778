"""The "limit": Agora's benchmarked endpoints with nothing in between the socket and the SQL.

A yardstick for bench/run.sh: the same HTTP contract as Agora for what the benchmark calls,
on the same schema and data (writing what the schema asks of a writer: a post's folded
title and search pieces, as Agora does), written as plainly and cheaply as Python allows: a bare ASGI
callable (no framework, no validation library), one asyncpg pool, orjson, and an HS256
token check with PyJWT. As Agora's contract requires, each statement also checks, in
the same round trip, that the token still counts (its account has the token's
generation, and its id is not revoked: `_token_counts`). What a real service must do and
this one skips on purpose: a token that no longer counts simply finds nothing (Agora
answers 401), it keeps no access log, no rate limits, no security headers, and it does
not upgrade old password hashes at login.

    LIMIT_DATABASE_URL=postgresql://postgres@127.0.0.1:5440/limit_small LIMIT_SECRET_KEY=... \\
        .venv/bin/python -m uvicorn bench.limit_server:app --workers 1 --port 8201 --no-access-log

Environment: LIMIT_DATABASE_URL (required), LIMIT_SECRET_KEY (required, the HS256 key),
LIMIT_POOL_SIZE (connections per worker, 8), LIMIT_TOKEN_MINUTES (token lifetime, 60).

    POST /login     form username (email), password  -> 200 {access_token, token_type} | 401
    GET  /posts/    ?limit=1..100 (10) &skip=0.. &search=  -> 200 [{"Post": {..., owner}, "votes": n, "voted": b}]
                    (a full page: Link: <...?before_id=<last id>>; rel="next", the other parameters kept)
    GET  /posts/ID  -> 200 {"Post": {..., owner}, "votes": n, "voted": b} | 404
    POST /posts/    JSON {title, content, published=true} -> 201 {id, title, ..., owner}
    POST /vote/     JSON {post_id, dir}: 1 adds (201; 409 if already there), 0 removes (201; 404 if none)
    GET  /health    -> 200 {"status": "ok"} (no database)

Posts are visible when published or owned by the caller (Agora's rule), newest first by
(created_at, id); a search is a case-insensitive substring of the title, with %, _ and \\
taken literally. Everything but /login and /health needs `Authorization: Bearer <token>`.
"""

import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import asyncpg
import jwt
import orjson
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from app.db.grams import bucket_elements_sql, grams

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ALGORITHM = "HS256"
MAX_INT4 = 2**31 - 1  # ids are PostgreSQL integers: a bigger one cannot exist
MAX_INT8 = 2**63 - 1
MAX_BODY_BYTES = 1 << 20
TITLE_MAX, CONTENT_MAX, SEARCH_MAX, EMAIL_MAX, PASSWORD_MAX = 300, 20_000, 100, 320, 1024
VERIFIED_TOKENS_MAX = 10_000

# --- SQL ------------------------------------------------------------------------
# $1 is always the caller's user id. A page of posts is chosen first (the feed index,
# newest first), then only its rows get their owner and their vote count.
_VISIBLE = "(published OR owner_id = $1)"
_ROW = "p.id, p.title, p.content, p.published, p.created_at, p.owner_id, u.email, u.created_at"
_VOTES = "(SELECT count(*) FROM votes v WHERE v.post_id = p.id)"
_VOTED = "(SELECT 1 FROM votes v WHERE v.user_id = $1 AND v.post_id = p.id) IS NOT NULL"
_PAGE_FROM = "SELECT id, title, content, published, created_at, owner_id FROM posts WHERE " + _VISIBLE


def _token_counts(parameters: int) -> str:
    """The caller's token still counts, as Agora's contract has it (a password change or a logout
    revokes it): its account has the token's generation, and its id is not revoked. The
    generation and the id are the statement's last two parameters, after its `parameters`."""
    generation, jti = f"${parameters + 1}", f"${parameters + 2}"
    return (
        f"EXISTS (SELECT 1 FROM users a WHERE a.id = $1 AND a.token_generation = {generation}"
        f" AND NOT EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = {jti}))"
    )


def _with_owner_and_votes(page: str, parameters: int) -> str:
    return (
        f"SELECT {_ROW}, {_VOTES}, {_VOTED} FROM ({page}) AS p JOIN users u ON u.id = p.owner_id"
        f" WHERE {_token_counts(parameters)} ORDER BY p.created_at DESC, p.id DESC"
    )


SQL_FEED = _with_owner_and_votes(f"{_PAGE_FROM} ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3", 3)
SQL_SEARCH = _with_owner_and_votes(
    f"{_PAGE_FROM} AND title_folded LIKE $4 ESCAPE '\\' ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3", 4
)
SQL_ONE = _with_owner_and_votes(f"{_PAGE_FROM} AND id = $2", 2)
# A post carries what the schema asks of every writer: the folded title, and its search
# pieces with its time buckets (app/db/grams.py, revision 8c3f1b6e2a90), as Agora writes them.
SQL_CREATE = (
    "WITH created AS (INSERT INTO posts (title, title_folded, content, published, owner_id, title_grams)"
    f" SELECT $2, $5, $3, $4, id, $8::integer[] || {bucket_elements_sql('now()')}"
    " FROM users WHERE id = $1 AND token_generation = $6"
    " AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $7) RETURNING *)"
    " SELECT p.id, p.title, p.content, p.published, p.created_at, p.owner_id, u.email, u.created_at"
    " FROM created AS p JOIN users u ON u.id = p.owner_id"
)
SQL_VISIBLE_POST = "SELECT 1 FROM posts WHERE id = $2 AND " + _VISIBLE
SQL_VOTE = (
    "INSERT INTO votes (user_id, post_id) SELECT $1, id FROM posts WHERE id = $2 AND "
    + _VISIBLE
    + f" AND {_token_counts(2)} ON CONFLICT DO NOTHING RETURNING post_id"
)
SQL_UNVOTE = (
    f"DELETE FROM votes WHERE user_id = $1 AND post_id = $2 AND EXISTS ({SQL_VISIBLE_POST})"
    f" AND {_token_counts(2)} RETURNING post_id"
)
SQL_LOGIN = "SELECT id, password, token_generation FROM users WHERE lower(email) = lower($1)"


class Caller(NamedTuple):
    """Who a token names: the account, and what decides whether the token still counts."""

    user_id: int
    generation: int
    jti: str

    @property
    def token(self) -> tuple[int, str]:
        """The last two parameters of every statement (`_token_counts`)."""
        return self.generation, self.jti


# --- plumbing -------------------------------------------------------------------
class HTTPError(Exception):
    """Ends a request with `status` and {"detail": detail}."""

    def __init__(self, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


CHALLENGE = [(b"www-authenticate", b"Bearer")]


def unauthorized(detail: str = "Could not validate credentials") -> HTTPError:
    return HTTPError(401, detail, CHALLENGE)


def invalid(detail: str) -> HTTPError:
    return HTTPError(422, detail)


def post_not_found(post_id: int) -> HTTPError:
    return HTTPError(404, f"post with id {post_id} was not found")


async def reply(send: Send, status: int, content: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(content)
    start: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if headers:
        start += headers
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "client disconnected")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPError(413, "request body too large")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def read_json_object(receive: Receive) -> dict[str, Any]:
    try:
        data = orjson.loads(await read_body(receive))
    except orjson.JSONDecodeError:
        raise invalid("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    return data


def storable_text(value: object, name: str, max_length: int, *, blank_ok: bool = False) -> str:
    """A string PostgreSQL can store (no NUL), within max_length, not blank unless allowed."""
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if "\x00" in value or len(value) > max_length or (not blank_ok and not value.strip()):
        raise invalid(f"{name} must be 1 to {max_length} characters, not blank, without NUL")
    return value


def strict_int(value: object, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}")
    return value


def query_int(text: str, name: str, low: int, high: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise invalid(f"{name} must be an integer") from None
    return strict_int(number, name, low, high)


def like_literal(text: str) -> str:
    """A LIKE pattern (escape character backslash) matching `text`, case-folded, anywhere, taken literally."""
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def post_fields(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "title": row[1],
        "content": row[2],
        "published": row[3],
        "created_at": row[4],
        "owner_id": row[5],
        "owner": {"id": row[5], "email": row[6], "created_at": row[7]},
    }


def next_page_link(scope: Scope, last_id: int) -> bytes:
    """The next page: the same query string without skip and before_id, keyset-paged from `last_id`."""
    kept = [
        pair
        for pair in scope["query_string"].split(b"&")
        if pair and pair.partition(b"=")[0] not in (b"skip", b"before_id")
    ]
    kept.append(b"before_id=%d" % last_id)
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    return b"<" + path + b"?" + b"&".join(kept) + b'>; rel="next"'


def post_and_votes(row: Any) -> dict[str, Any]:
    return {"Post": post_fields(row), "votes": row[8], "voted": row[9]}


# --- the service ----------------------------------------------------------------
class Limit:
    """Per-worker state: settings, the pool, the password hasher and the verified tokens."""

    def __init__(self) -> None:
        self.database_url = os.environ.get("LIMIT_DATABASE_URL", "")
        self.secret = os.environ.get("LIMIT_SECRET_KEY", "")
        self.pool_size = int(os.environ.get("LIMIT_POOL_SIZE", "8"))
        self.token_lifetime = timedelta(minutes=int(os.environ.get("LIMIT_TOKEN_MINUTES", "60")))
        # Checks Agora's Argon2id hashes (and bcrypt ones); the cost is read from each hash.
        self.hasher = PasswordHash((Argon2Hasher(), BcryptHasher()))
        self.decoy_hash = ""
        self.pool: Any = None
        # token -> (who it names, expiry as a Unix time): a token is checked in full once.
        self.verified: dict[str, tuple[Caller, float]] = {}

    async def start(self) -> None:
        if not self.database_url or not self.secret:
            raise RuntimeError("set LIMIT_DATABASE_URL and LIMIT_SECRET_KEY")
        # Unknown emails are checked against this, so they cost what a wrong password costs.
        self.decoy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        self.pool = await asyncpg.create_pool(self.database_url, min_size=self.pool_size, max_size=self.pool_size)

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    # -- authentication
    def caller(self, scope: Scope) -> Caller:
        """Who the request's bearer token names; 401 without a valid one (whether it still counts,
        each statement checks: `_token_counts`)."""
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, token_bytes = header.partition(b" ")
        token = token_bytes.strip().decode("latin-1")
        if scheme.lower() != b"bearer" or not token:
            raise unauthorized("Not authenticated")
        known = self.verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            raise unauthorized()
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "gen", "jti"]}
            )
        except jwt.InvalidTokenError:
            raise unauthorized() from None
        subject = claims["sub"]
        if not (isinstance(subject, str) and subject.isascii() and subject.isdigit() and int(subject) <= MAX_INT4):
            raise unauthorized()
        generation, jti = claims["gen"], claims["jti"]
        if not (isinstance(generation, int) and 0 <= generation <= MAX_INT4 and isinstance(jti, str)):
            raise unauthorized()
        if len(self.verified) >= VERIFIED_TOKENS_MAX:
            self.verified.clear()  # rare: a run's worth of logins; they are simply checked again
        caller = Caller(int(subject), generation, jti)
        self.verified[token] = (caller, float(claims["exp"]))
        return caller

    def password_matches(self, password: str, stored: str | None) -> bool:
        if stored is None:
            self.hasher.verify(password, self.decoy_hash)  # the work of a wrong password, for nobody
            return False
        try:
            return self.hasher.verify(password, stored)
        except (UnknownHashError, ValueError):  # not a hash we know ("!"), or too long for bcrypt
            return False

    async def login(self, receive: Receive, send: Send) -> None:
        try:
            form = dict(parse_qsl((await read_body(receive)).decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise invalid("the form is not UTF-8") from None
        email = storable_text(form.get("username"), "username", EMAIL_MAX).strip()
        password = storable_text(form.get("password"), "password", PASSWORD_MAX, blank_ok=True)
        if not password:
            raise invalid("password is required")
        row = await self.pool.fetchrow(SQL_LOGIN, email)
        stored: str | None = row[1] if row is not None else None
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.password_matches, password, stored):
            raise unauthorized("Invalid credentials")
        now = datetime.now(UTC)
        claims = {"sub": str(row[0]), "iat": now, "exp": now + self.token_lifetime}
        claims |= {"gen": row[2], "jti": secrets.token_urlsafe(16)}
        token = jwt.encode(claims, self.secret, algorithm=ALGORITHM)
        await reply(send, 200, {"access_token": token, "token_type": "bearer"})

    # -- posts
    async def list_posts(self, caller: Caller, scope: Scope, send: Send) -> None:
        user_id, generation, jti = caller
        limit, skip, search = 10, 0, ""
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if name == "limit":
                limit = query_int(value, "limit", 1, 100)
            elif name == "skip":
                skip = query_int(value, "skip", 0, MAX_INT8)
            elif name == "search":
                search = storable_text(value, "search", SEARCH_MAX, blank_ok=True)
        if search:
            rows = await self.pool.fetch(SQL_SEARCH, user_id, limit, skip, like_literal(search), generation, jti)
        else:
            rows = await self.pool.fetch(SQL_FEED, user_id, limit, skip, generation, jti)
        headers = [(b"link", next_page_link(scope, rows[-1][0]))] if len(rows) == limit else None
        await reply(send, 200, [post_and_votes(row) for row in rows], headers)

    async def read_post(self, caller: Caller, id_text: str, send: Send) -> None:
        post_id = query_int(id_text, "post id", 1, MAX_INT8)
        row = await self.pool.fetchrow(SQL_ONE, caller.user_id, post_id, *caller.token) if post_id <= MAX_INT4 else None
        if row is None:
            raise post_not_found(post_id)
        await reply(send, 200, post_and_votes(row))

    async def create_post(self, caller: Caller, receive: Receive, send: Send) -> None:
        data = await read_json_object(receive)
        title = storable_text(data.get("title"), "title", TITLE_MAX)
        content = storable_text(data.get("content"), "content", CONTENT_MAX)
        published = data.get("published", True)
        if not isinstance(published, bool):
            raise invalid("published must be true or false")
        folded = title.casefold()
        row = await self.pool.fetchrow(
            SQL_CREATE, caller.user_id, title, content, published, folded, *caller.token, grams(folded)
        )
        if row is None:  # the token's account is gone, or the token no longer counts
            raise unauthorized()
        await reply(send, 201, post_fields(row))

    async def vote(self, caller: Caller, receive: Receive, send: Send) -> None:
        user_id = caller.user_id
        data = await read_json_object(receive)
        post_id = strict_int(data.get("post_id"), "post_id", 1, MAX_INT8)
        direction = strict_int(data.get("dir"), "dir", 0, 1)
        if post_id > MAX_INT4:
            raise post_not_found(post_id)
        async with self.pool.acquire() as connection:
            try:
                changed = await connection.fetchval(
                    SQL_VOTE if direction else SQL_UNVOTE, user_id, post_id, *caller.token
                )
            except asyncpg.ForeignKeyViolationError:  # the post or the account went away meanwhile
                changed = None
            if changed is not None:
                message = "successfully added vote" if direction else "successfully deleted vote"
                await reply(send, 201, {"message": message})
                return
            # Nothing changed: say why.
            if await connection.fetchval(SQL_VISIBLE_POST, user_id, post_id) is None:
                raise post_not_found(post_id)
        if direction:
            raise HTTPError(409, f"user {user_id} has already voted on post {post_id}")
        raise HTTPError(404, "vote does not exist")

    # -- routing
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]  # /posts and /posts/ are the same route, as in Agora
        if path == "/login":
            if method != "POST":
                raise HTTPError(405, "Method Not Allowed")
            await self.login(receive, send)
        elif path == "/posts":
            if method == "GET":
                await self.list_posts(self.caller(scope), scope, send)
            elif method == "POST":
                await self.create_post(self.caller(scope), receive, send)
            else:
                raise HTTPError(405, "Method Not Allowed")
        elif path.startswith("/posts/") and "/" not in path[7:]:
            if method != "GET":
                raise HTTPError(405, "Method Not Allowed")
            await self.read_post(self.caller(scope), path[7:], send)
        elif path == "/vote":
            if method != "POST":
                raise HTTPError(405, "Method Not Allowed")
            await self.vote(self.caller(scope), receive, send)
        elif path == "/health" and method == "GET":
            await reply(send, 200, {"status": "ok"})
        else:
            raise HTTPError(404, "Not Found")

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self.http(scope, receive, send)
            except HTTPError as error:
                await reply(send, error.status, {"detail": error.detail}, error.headers)
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                await reply(send, 503, {"detail": "database unavailable"})
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)


app = Limit()
