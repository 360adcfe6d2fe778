"""The HTTP server's protocol: uvicorn's httptools protocol, one socket write per response.

uvicorn writes a response's status line and headers, then its body, as two writes; on
a TCP socket each write is a system call that also runs the peer's receive path (on
loopback) or sends a segment of its own. Writes made while one event-loop callback
runs (an endpoint sends start and body without waiting in between) are joined and go
out together right after it, so a small response costs one write instead of two.
"""

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class WriteCoalescingTransport:
    """Delegates to `transport`, joining the writes of one event-loop iteration into one."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Write out what is pending (called by the loop, and before the connection closes)."""
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, ...) is the real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `WriteCoalescingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        coalescing = WriteCoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))


# What `python -m app` passes to uvicorn (and the test suite's live server too).
UVICORN_OPTIONS: dict[str, Any] = {
    "http": CoalescingHttpToolsProtocol,
    "ws": "none",  # the API has no WebSocket endpoints
}
