"""Workers that share out connections evenly: `python -m app --workers N`.

uvicorn's workers all accept on one listening socket, and a worker takes every connection
waiting when it wakes. Clients that keep their connections open (a reverse proxy's upstream
pool, an HTTP client's pool, a load generator) open them together, and one worker takes most
of them: 16 connections opened at once went 16 and 0 (tests/test_worker_balance.py), and the
benchmark's 16 went 14 and 2, 12 and 4. That worker serves its share on one core while the
other has little to do, and its requests queue.

Here each worker publishes how many connections it holds in a small file that every worker
maps (`ConnectionShares`), and accepts while it holds no more than the worker that holds
fewest. One that holds more leaves a waiting connection to the others for up to
`DEFER_SECONDS`, and then takes it if it is still waiting: a connection never waits longer
than that, whatever state the other workers are in (busy, hung, or killed with a count still
in the file). Connections are counted from their accept to their close.
"""

import asyncio
import contextlib
import logging
import mmap
import os
import socket
import struct
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.supervisors import multiprocess

logger = logging.getLogger("uvicorn.error")

# The file the workers share their counts through; set by the supervisor for its workers.
SHARES_VARIABLE = "AGORA_WORKER_SHARES"
# Slots of (pid, connections), two int32 each; a worker beyond them accepts as uvicorn does.
SLOTS = 64
_SLOT = struct.Struct("=ii")
# How long at most a worker holding more connections than another leaves a waiting connection
# to the others (a busy worker may take tens of milliseconds to get to it). It looks at the
# counts again every LOOK_AGAIN_SECONDS, and takes the connection once it holds no more.
DEFER_SECONDS = 0.05
LOOK_AGAIN_SECONDS = 0.001
# Connections accepted at one wake at most, so that the event loop serves requests in between.
ACCEPTS_PER_WAKE = 32
# After accept() fails for want of file descriptors (EMFILE), as asyncio does.
ACCEPT_RETRY_SECONDS = 1.0


class ConnectionShares:
    """This worker's slot in the shared file, and the other workers' counts."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "r+b")  # noqa: SIM115 (kept open for the worker's life)
        self._map = mmap.mmap(self._file.fileno(), SLOTS * _SLOT.size)
        self.slot = self._claim()

    def _claim(self) -> int | None:
        """A slot that is free, or whose worker is gone (restarted by the supervisor); None if none."""
        pid = os.getpid()
        with self._locked():
            for slot in range(SLOTS):
                owner, _ = _SLOT.unpack_from(self._map, slot * _SLOT.size)
                if owner == 0 or not _alive(owner):
                    _SLOT.pack_into(self._map, slot * _SLOT.size, pid, 0)
                    return slot
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl  # here, not at the top: the module is imported where there is none (Windows)

        fcntl.flock(self._file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._file, fcntl.LOCK_UN)

    def publish(self, connections: int) -> None:
        if self.slot is not None:
            struct.pack_into("=i", self._map, self.slot * _SLOT.size + 4, connections)

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections another live worker holds; None when there is no other.
        A slot left by a worker that died is freed when it would count."""
        while True:
            fewest: tuple[int, int] | None = None  # (connections, slot)
            for slot, (owner, connections) in enumerate(_SLOT.iter_unpack(self._map)):
                if owner != 0 and slot != self.slot and (fewest is None or connections < fewest[0]):
                    fewest = (connections, slot)
            if fewest is None:
                return None
            owner, _ = _SLOT.unpack_from(self._map, fewest[1] * _SLOT.size)
            if owner == 0 or _alive(owner):
                return fewest[0]
            with self._locked():  # gone without releasing it (killed): free it, and look again
                if _SLOT.unpack_from(self._map, fewest[1] * _SLOT.size)[0] == owner:
                    _SLOT.pack_into(self._map, fewest[1] * _SLOT.size, 0, 0)

    def release(self) -> None:
        if self.slot is not None:
            with self._locked():
                _SLOT.pack_into(self._map, self.slot * _SLOT.size, 0, 0)
            self.slot = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_shares_file() -> str:
    """A new, zeroed file of SLOTS slots; the caller removes it when the workers are gone."""
    descriptor, path = tempfile.mkstemp(prefix="agora-workers-")
    with os.fdopen(descriptor, "wb") as file:
        file.write(bytes(SLOTS * _SLOT.size))
    return path


class _Counts:
    """The connections this worker holds, from their accept (BalancedListener) to their close
    (the protocol's connection_lost); published to `shares` when the worker has a slot."""

    def __init__(self) -> None:
        self.held = 0
        self.shares: ConnectionShares | None = None

    def add(self, change: int) -> None:
        self.held += change
        if self.shares is not None:
            self.shares.publish(self.held)


counts = _Counts()


def connection_closed() -> None:
    """Called by the HTTP protocol (app/http/serving.py) when a connection is lost."""
    if counts.shares is not None:  # counted only where a BalancedListener accepted it
        counts.add(-1)


class BalancedListener:
    """Accepts on a listening socket shared with other workers, while this one holds no more
    connections than any of them (see the module's docstring). Closed as an asyncio Server is."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        shares: ConnectionShares,
        *,
        backlog: int,
        ssl: Any = None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._shares = shares
        self._ssl = ssl
        self._closed = False
        self._deferred_at = 0.0
        self._handing: set[asyncio.Task[None]] = set()
        sock.listen(backlog)  # the supervisor binds it; each worker listens, as asyncio's create_server does
        sock.setblocking(False)
        self._fd = sock.fileno()
        loop.add_reader(self._fd, self._ready)

    def _ready(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            if self._holds_more():
                # Leave the waiting connection to a worker holding fewer for a while (`_deferring`).
                self._loop.remove_reader(self._fd)
                self._deferred_at = self._loop.time()
                self._loop.call_later(LOOK_AGAIN_SECONDS, self._deferring)
                return
            if not self._accept_one():
                return

    def _holds_more(self) -> bool:
        if self._shares.slot is None:
            return False  # the others do not see this worker's count: it takes what it is given
        fewest = self._shares.fewest_elsewhere()
        return fewest is not None and counts.held > fewest

    def _deferring(self) -> None:
        """While a connection waits for a worker holding fewer: take it once this one holds no
        more than any (the others took connections meanwhile), or DEFER_SECONDS have passed."""
        if self._closed:
            return
        if self._holds_more() and self._loop.time() - self._deferred_at < DEFER_SECONDS:
            self._loop.call_later(LOOK_AGAIN_SECONDS, self._deferring)
            return
        if self._accept_one() is not None:
            self._loop.add_reader(self._fd, self._ready)

    def _accept_one(self) -> bool | None:
        """Accept one waiting connection: True; False when none waits; None when accepting
        fails for a while (no file descriptor left: the socket is watched again later)."""
        try:
            connection, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError as error:
            logger.error("accepting a connection failed (%s); trying again in %.0f s", error, ACCEPT_RETRY_SECONDS)
            with contextlib.suppress(ValueError):
                self._loop.remove_reader(self._fd)
            self._loop.call_later(ACCEPT_RETRY_SECONDS, self._watch_again)
            return None
        connection.setblocking(False)
        if connection.family in (socket.AF_INET, socket.AF_INET6):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        counts.add(1)  # at once, so that the other workers see it before they accept again
        handing = self._loop.create_task(self._hand_over(connection))
        self._handing.add(handing)
        handing.add_done_callback(self._handing.discard)
        return True

    def _watch_again(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._fd, self._ready)

    async def _hand_over(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, connection, ssl=self._ssl)
        except Exception as error:  # a client gone mid-handshake, say: that connection alone
            logger.debug("a connection failed before it was served: %r", error)
            connection.close()
            counts.add(-1)  # no protocol will report its close

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._fd)

    async def wait_closed(self) -> None:
        if self._handing:
            await asyncio.gather(*self._handing, return_exceptions=True)


class BalancedServer(uvicorn.Server):
    """uvicorn's server, accepting on the supervisor's sockets through BalancedListener."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        path = os.environ.get(SHARES_VARIABLE)
        if not sockets or not path:
            await super().startup(sockets)
            return
        # uvicorn's startup with no socket runs the lifespan and serves nothing; the listeners follow.
        await super().startup([])
        if not self.started:
            return
        shares = ConnectionShares(path)
        if shares.slot is None:
            logger.warning("no free slot in %s: this worker accepts without balancing", path)
        counts.shares = shares
        counts.add(0)
        config, loop = self.config, asyncio.get_running_loop()

        def create_protocol() -> asyncio.BaseProtocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        listeners = [
            BalancedListener(loop, sock, create_protocol, shares, backlog=config.backlog, ssl=config.ssl)
            for sock in sockets
        ]
        self.servers = listeners  # type: ignore[assignment]  # closed and awaited as asyncio Servers are

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Out of the table first: a worker that no longer accepts must not look like the one
        # holding fewest while its connections drain (the others would wait on it).
        if counts.shares is not None:
            counts.shares.release()
            counts.shares = None
        await super().shutdown(sockets)


class _BalancedProcess(multiprocess.Process):
    """uvicorn's worker process, serving with BalancedServer."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = BalancedServer(config=self.config)
        return self._server


def run_workers(config: uvicorn.Config) -> None:
    """Serve `config` with its `workers` processes, as `uvicorn.run` does, the connections shared out."""
    path = make_shares_file()
    os.environ[SHARES_VARIABLE] = path  # inherited by the workers
    sock = config.bind_socket()
    # uvicorn's supervisor makes its workers with the module's `Process`: this one, so that each
    # worker runs BalancedServer (the worker imports this module to unpickle its process object).
    multiprocess.Process = _BalancedProcess  # type: ignore[misc]
    try:
        multiprocess.Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
