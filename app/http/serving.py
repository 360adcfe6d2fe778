"""The HTTP server's protocol: uvicorn's httptools protocol, one socket write per response.

uvicorn writes a response's status line and headers, then its body, as two writes; on
a TCP socket each write is a system call that also runs the peer's receive path (on
loopback) or sends a segment of its own. Writes made while one event-loop callback
runs (an endpoint sends start and body without waiting in between) are joined and go
out together right after it, so a small response costs one write instead of two.

The protocol also bounds what one connection may cost before the app sees a request
(uvicorn's httptools protocol has no limits of its own: a 50 MB header was buffered,
and a half-sent request held its connection forever):
- the request head (request line and headers) is at most `MAX_HEAD_BYTES` and
  `MAX_HEADERS` headers, else 431 and the connection is closed; no more than the cap
  and one read of a head is ever buffered;
- the head must arrive within `HEAD_TIMEOUT_SECONDS` of its first byte (of the
  connection's opening, for its first request), the body within
  `BODY_TIMEOUT_SECONDS` of the head's end, else 408 and the close; time during which
  the server itself stopped reading (flow control, a pipelined request waiting) is not
  held against the client.
A refusal is only the close when a response has begun, or when earlier pipelined
requests are still unanswered (their client resends them, RFC 9112 section 9.3.2).
Idle keep-alive connections keep uvicorn's `timeout_keep_alive`. The limits are class
attributes: a subclass changes them (the tests use small timeouts that way).
"""

import asyncio
import json
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.http.balance import connection_closed

# A bearer token and the usual headers are under 2 KiB; 32 KiB leaves room for big
# cookies and proxies' headers (nginx's default allows 4 lines of 8 KiB; Node 16 KiB).
MAX_HEAD_BYTES = 32 * 1024
# Apache's LimitRequestFields default; browsers send about 15.
MAX_HEADERS = 100
# Any client sends a head of 32 KiB in well under a second; 10 s absorbs a lossy mobile
# link, and is what a connection that says nothing may cost.
HEAD_TIMEOUT_SECONDS = 10.0
# A deadline for the whole body, not an idle timeout: a client sending a byte every few
# seconds would pass any idle timeout forever. Bodies are at most MAX_REQUEST_BODY_BYTES
# (256 KiB): 30 s asks for 9 KB/s.
BODY_TIMEOUT_SECONDS = 30.0

# Where the parser is in the current request.
_IDLE, _HEAD, _BODY = 0, 1, 2


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing a head at once; says why."""


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
    """uvicorn's httptools protocol on a `WriteCoalescingTransport`, with limits on the request head and body.

    The hot path adds a few attribute updates per request: a byte count in
    `data_received`, the parser phase in the callbacks. Timers are armed only when a read
    leaves a head or body incomplete (and at connection open), and cancelled when it ends.
    """

    max_head_bytes = MAX_HEAD_BYTES
    max_headers = MAX_HEADERS
    head_timeout = HEAD_TIMEOUT_SECONDS
    body_timeout = BODY_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The limits read for every request, as instance attributes (faster than the class's).
        self._max_head_bytes = self.max_head_bytes
        self._max_headers = self.max_headers
        self._phase = _IDLE
        # Bytes received towards the head being read, since the last head ended.
        self._head_bytes = 0
        # The head being read began in a read that also ended another head or a body: its
        # bytes were not all counted, so it is measured when it ends.
        self._head_unmeasured = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        coalescing = WriteCoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))
        # The first request's head is timed from the connection's opening.
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        # Nothing may keep a closed connection alive (uvicorn leaves its keep-alive timer
        # armed when the connection ended in an error).
        self._cancel_timers()
        self._unset_keepalive_if_required()
        super().connection_lost(exc)
        connection_closed()

    def data_received(self, data: bytes | memoryview) -> None:
        if self._phase != _BODY:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                self._receive_past_the_cap(data)
                return
        else:  # a head that begins in this read is not counted
            self._head_unmeasured = True
        # uvicorn's data_received, with a 431 for too many headers...
        if self.timeout_keep_alive_task is not None:
            self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse(431, str(exc.__context__))
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        # ...then the timer of a head or body this read left unfinished.
        phase = self._phase
        if phase == _BODY:
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)
        elif phase == _HEAD or self._head_bytes:
            if not self._head_bytes:  # a head began after the bytes counted
                self._head_unmeasured = True
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _receive_past_the_cap(self, data: bytes | memoryview) -> None:
        """Parse `data` up to the cap at a time; refuse with 431 when no head ends there.

        A read may hold a small head and a large body, or many pipelined requests: those
        pass, as their heads end within the cap.
        """
        view = memoryview(data)
        self._head_bytes -= len(view)  # counted again below, a piece at a time
        while self._phase != _BODY and self._head_bytes + len(view) > self._max_head_bytes:
            within = self._max_head_bytes - self._head_bytes
            if within:
                self.data_received(view[:within])  # the count reaches the cap, unless a head ends (0)
                if self.transport.is_closing():
                    return
            if self._head_bytes >= self._max_head_bytes:
                self._refuse(431, f"Request head larger than {self._max_head_bytes} bytes")
                return
            view = view[within:]
        if view:
            self.data_received(view)

    # Parser callbacks: uvicorn's, plus the phase and the header count. Those called for
    # every request call uvicorn's directly or inline them (super() costs more).

    def on_url(self, url: bytes) -> None:
        self._phase = _HEAD
        self.url += url  # uvicorn's on_url

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        if len(headers) >= self._max_headers:
            raise _HeadRefused(f"More than {self._max_headers} request headers")
        # uvicorn's on_header
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._head_unmeasured:
            self._head_unmeasured = False
            # "GET /url HTTP/1.1\r\n", "name: value\r\n" each, "\r\n"
            size = len(self.parser.get_method()) + len(self.url) + 14
            size += sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self._max_head_bytes:
                raise _HeadRefused(f"Request head larger than {self._max_head_bytes} bytes")
        self._phase = _BODY
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        # uvicorn's on_message_complete
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        self.cycle.more_body = False
        self.cycle.message_event.set()

    # Timeouts and refusals

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server stopped reading (a pipelined request waits): not the client's fault
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)
        elif self._phase == _HEAD or self._head_bytes:
            self.logger.debug("%srequest head not received in %s s", self._log_prefix(), self.head_timeout)
            self._refuse(408, "Request head not received in time")
        else:  # not a byte of a request: close, as uvicorn does an idle keep-alive connection
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the app has not taken the body read so far: not the client's fault
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)
        else:
            self.logger.debug("%srequest body not received in %s s", self._log_prefix(), self.body_timeout)
            self._refuse(408, "Request body not received in time")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` with `{"detail": detail}` and close, or only close if a response is begun or owed first."""
        if status == 431:
            self.logger.warning("%s%d %s", self._log_prefix(), status, detail)
        cycle = self.cycle
        if self._phase == _BODY:  # the request refused is `cycle`
            answer = not self.pipeline and not cycle.response_started
            if not cycle.response_complete:  # the app's receive() says disconnect, its send() is dropped
                cycle.disconnected = True
                cycle.message_event.set()
        else:  # a head: the previous request must be answered first
            answer = cycle is None or cycle.response_complete
        if answer:
            body = json.dumps({"detail": detail}).encode()
            content = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.append(
                b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            )
            content.append(body)
            self.transport.write(b"".join(content))
        self.transport.close()

    def _log_prefix(self) -> str:
        return f"{self.client[0]}:{self.client[1]} - " if self.client else ""

    def _cancel_timers(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None


# What `python -m app` passes to uvicorn (and the test suite's live server too).
UVICORN_OPTIONS: dict[str, Any] = {
    "http": CoalescingHttpToolsProtocol,
    "ws": "none",  # the API has no WebSocket endpoints
}
