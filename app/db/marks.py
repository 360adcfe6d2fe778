"""Each user's last write position, for read-your-writes on standbys (app/db/replicas.py).

`WriteMarks` keeps them in this process's memory; `RedisWriteMarks` in Redis too
(RATE_LIMIT_STORAGE_URL), where every worker and host finds them. A mark is the
primary's WAL position after the user's write; it is kept `seconds`, then forgotten.

Redis is asked once per read that could go to a standby, so its client is on the
request path. It is a minimal one here, a pipelined connection speaking RESP for two
commands (GET, and EVALSHA of one script): measured on the benchmark machine (uvloop,
Redis on the same host), a GET took 32 µs with it and 89 µs through coredis (the client
the rate limits use).
"""

import asyncio
import collections
import hashlib
import logging
import ssl
import time
from typing import cast
from urllib.parse import unquote, urlsplit

logger = logging.getLogger("agora")

# A write whose position could not be read: its author's reads go to the primary until the mark expires.
UNKNOWN_POSITION = 2**63 - 1
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_RETRY_SECONDS = 1.0


class WriteMarks:
    """Each user's last write position, for `seconds` after that write, in this process's memory."""

    def __init__(self, seconds: float, *, max_users: int = 100_000) -> None:
        self.seconds = seconds
        self._max_users = max_users
        self._marks: dict[int, tuple[int, float]] = {}  # user id: (position, forgotten at), oldest first
        # The cluster's system identifier (what shared marks are kept under), once known.
        self.namespace: str | None = None

    def remember(self, user_id: int, position: int) -> None:
        now = time.monotonic()
        previous = self._marks.pop(user_id, None)
        if previous is not None and previous[1] > now:
            position = max(position, previous[0])
        self._marks[user_id] = (position, now + self.seconds)
        if len(self._marks) > self._max_users:
            del self._marks[next(iter(self._marks))]

    def known_here(self, user_id: int) -> int:
        mark = self._marks.get(user_id)
        if mark is None:
            return 0
        if mark[1] <= time.monotonic():
            del self._marks[user_id]
            return 0
        return mark[0]

    async def record(self, user_id: int, position: int) -> None:
        """`user_id` wrote: their reads need a standby at `position` or past it."""
        self.remember(user_id, position)

    async def position(self, user_id: int, furthest: int) -> int:
        """How far a standby must have replayed to show `user_id` their writes (0: any standby).

        `furthest`: the furthest usable standby's position; a mark known here past it
        settles the question without asking anyone.
        """
        return self.known_here(user_id)

    async def close(self) -> None:
        pass


# Keep the larger of two positions (zero-padded hex, so strings compare as numbers):
# two writes of one user finishing on two hosts at once must not leave the older mark.
RECORD_LARGER = b"""
local current = redis.call('GET', KEYS[1])
if (not current) or ARGV[1] > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""
RECORD_LARGER_SHA = hashlib.sha1(RECORD_LARGER).hexdigest().encode()


class RedisWriteMarks(WriteMarks):
    """Marks shared by every worker and host through Redis (and also kept here, for this process's reads).

    When Redis does not answer, a write is marked here only, and a read that would need
    to ask goes to the primary (it cannot tell whether the user wrote elsewhere); Redis
    is asked again a second later.
    """

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(seconds)
        self._redis = RedisClient(url, timeout=REDIS_TIMEOUT_SECONDS)
        self._retry_at = 0.0

    def _key(self, user_id: int) -> bytes:
        return f"agora:{self.namespace}:written:{user_id}".encode()

    def _reachable(self) -> bool:
        return self.namespace is not None and time.monotonic() >= self._retry_at

    def _failed(self, exc: Exception) -> None:
        if time.monotonic() >= self._retry_at:
            logger.warning(
                "Redis (read-your-writes marks) does not answer: %r; reads that need it go to the primary", exc
            )
        self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        self._redis.reset()

    async def record(self, user_id: int, position: int) -> None:
        self.remember(user_id, position)
        if not self._reachable():
            return
        arguments = (self._key(user_id), f"{position:016x}".encode(), str(int(self.seconds * 1000)).encode())
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                try:
                    await self._redis.call(b"EVALSHA", RECORD_LARGER_SHA, b"1", *arguments)
                except RedisReplyError as exc:
                    if not str(exc).startswith("NOSCRIPT"):
                        raise
                    await self._redis.call(b"EVAL", RECORD_LARGER, b"1", *arguments)
        except (OSError, TimeoutError, RedisReplyError) as exc:
            self._failed(exc)

    async def position(self, user_id: int, furthest: int) -> int:
        here = self.known_here(user_id)
        if here > furthest:
            return here
        if not self._reachable():
            return UNKNOWN_POSITION
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                shared = await self._redis.call(b"GET", self._key(user_id))
        except (OSError, TimeoutError, RedisReplyError) as exc:
            self._failed(exc)
            return UNKNOWN_POSITION
        return max(here, int(shared, 16)) if isinstance(shared, bytes) else here

    async def close(self) -> None:
        self._redis.reset()


class RedisReplyError(Exception):
    """Redis answered a command with an error."""


Reply = bytes | int | None | RedisReplyError


class _RedisProtocol(asyncio.Protocol):
    """One connection: commands go out in order, and their replies come back in the same order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiting: collections.deque[asyncio.Future[Reply]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._waiting:
            try:
                parsed = _parse(self._buffer)
            except ValueError as exc:  # not RESP: give up on this connection
                self.close(exc)
                return
            if parsed is None:
                return
            reply, end = parsed
            del self._buffer[:end]
            waiter = self._waiting.popleft()
            if not waiter.done():  # its caller may have stopped waiting (a timeout)
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"Redis closed the connection: {exc!r}")
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def send(self, arguments: tuple[bytes, ...]) -> "asyncio.Future[Reply]":
        if self.closed or self._transport is None:
            raise ConnectionError("the connection to Redis is closed")
        parts = [b"*%d\r\n" % len(arguments)]
        for argument in arguments:
            parts.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
        self._transport.write(b"".join(parts))
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        return waiter

    def close(self, exc: Exception | None = None) -> None:
        if self._transport is not None:
            self._transport.close()
        self.connection_lost(exc)


def _parse(buffer: bytearray) -> tuple[Reply, int] | None:
    """The first reply in `buffer` and where it ends; None while it is incomplete. RESP2 scalars only."""
    end = buffer.find(b"\r\n")
    if end < 0:
        return None
    kind, line = buffer[:1], bytes(buffer[1:end])
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, end + 2
        if len(buffer) < end + 4 + length:
            return None
        return bytes(buffer[end + 2 : end + 2 + length]), end + 4 + length
    if kind == b":":
        return int(line), end + 2
    if kind == b"+":
        return line, end + 2
    if kind == b"-":
        return RedisReplyError(line.decode(errors="replace")), end + 2
    raise ValueError(f"unexpected reply from Redis: {bytes(buffer[:40])!r}")


class RedisClient:
    """A redis:// (or rediss://) URL's server, on one pipelined connection opened as needed."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._tls = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._login: tuple[bytes, ...] = ()
        if parts.password is not None:
            user = (unquote(parts.username).encode(),) if parts.username else ()
            self._login = (b"AUTH", *user, unquote(parts.password).encode())
        database = parts.path.strip("/")
        self._select = (b"SELECT", database.encode()) if database and database != "0" else ()
        self._timeout = timeout
        self._protocol: _RedisProtocol | None = None
        self._connecting = asyncio.Lock()

    async def call(self, *arguments: bytes) -> Reply:
        """Redis's reply to one command; a RedisReplyError reply is raised."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        reply = await protocol.send(arguments)
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def _connect(self) -> _RedisProtocol:
        async with self._connecting:
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self._timeout):
                _, protocol = await loop.create_connection(_RedisProtocol, self._host, self._port, ssl=self._tls)
                for command in (self._login, self._select):
                    if command and isinstance(reply := await protocol.send(command), RedisReplyError):
                        protocol.close()
                        raise reply
            self._protocol = protocol
            return protocol

    def reset(self) -> None:
        """Close the connection (the next call opens a new one)."""
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None
