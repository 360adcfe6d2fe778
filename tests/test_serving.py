"""The server protocol (app/http/serving.py): one write per response, and limits on what a request may cost.

The transport is checked on a real event loop against a transport that records its
writes; the protocol on a live uvicorn server (the options `python -m app` uses), over
raw sockets, with keep-alive, pipelining, `Connection: close` and a large file; then
its limits: the head's size and header count (431), the head and body timeouts (408, on
a server of its own with half-second timeouts), and a client sending 50 MB of header.
"""

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from app.http.docs import ASSETS, ASSETS_URL
from app.http.serving import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    UVICORN_OPTIONS,
    CoalescingHttpToolsProtocol,
    WriteCoalescingTransport,
)


class RecordingTransport:
    """The part of a transport that WriteCoalescingTransport uses, recording what it is asked."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 4321)}.get(name, default)


def coalescing(loop: asyncio.AbstractEventLoop) -> tuple[WriteCoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return WriteCoalescingTransport(real, loop), real  # type: ignore[arg-type]


async def next_iteration() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_the_writes_of_one_callback_leave_as_one_write_in_order() -> None:
    async def scenario() -> list[bytes]:
        transport, real = coalescing(asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert real.writes == [], "nothing may leave before the callback ends"
        await next_iteration()
        return real.writes

    assert asyncio.run(scenario()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_writes_of_separate_iterations_leave_separately() -> None:
    async def scenario() -> list[bytes]:
        transport, real = coalescing(asyncio.get_running_loop())
        transport.write(b"first")
        await next_iteration()
        transport.write(b"second")
        await next_iteration()
        return real.writes

    assert asyncio.run(scenario()) == [b"first", b"second"]


def test_close_writes_what_is_pending_before_closing() -> None:
    async def scenario() -> RecordingTransport:
        transport, real = coalescing(asyncio.get_running_loop())
        transport.write(b"last words")
        transport.close()
        await next_iteration()  # the scheduled flush finds nothing more to write
        return real

    real = asyncio.run(scenario())
    assert real.writes == [b"last words"]
    assert real.closed


def test_abort_drops_what_is_pending() -> None:
    async def scenario() -> RecordingTransport:
        transport, real = coalescing(asyncio.get_running_loop())
        transport.write(b"never sent")
        transport.abort()
        await next_iteration()
        return real

    real = asyncio.run(scenario())
    assert real.writes == []
    assert real.aborted


def test_nothing_is_written_to_a_transport_that_closed_meanwhile() -> None:
    async def scenario() -> RecordingTransport:
        transport, real = coalescing(asyncio.get_running_loop())
        transport.write(b"too late")
        real.close()  # e.g. the client went away
        await next_iteration()
        return real

    assert asyncio.run(scenario()).writes == []


def test_everything_else_is_the_real_transports() -> None:
    async def scenario() -> Any:
        transport, _ = coalescing(asyncio.get_running_loop())
        return transport.get_extra_info("peername")

    assert asyncio.run(scenario()) == ("127.0.0.1", 4321)


def test_python_m_app_serves_with_the_coalescing_protocol() -> None:
    assert UVICORN_OPTIONS["http"] is CoalescingHttpToolsProtocol


# --- on a live server -------------------------------------------------------------------


def read_response(conn: socket.socket, buffer: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from `conn` (what follows stays in `buffer`)."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed in the middle of the headers: {bytes(buffer)!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    length = int(headers["content-length"])
    body = bytearray(rest)
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {len(body)} of {length} body bytes"
        body += chunk
    buffer[:] = body[length:]
    return status_line.encode(), headers, bytes(body[:length])


def connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_pipelined_requests_on_one_connection_get_whole_answers_in_order(live_server: str) -> None:
    with connect(live_server) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n")
        buffer = bytearray()
        first = read_response(conn, buffer)
        second = read_response(conn, buffer)
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection is still usable
        third = read_response(conn, buffer)
    assert first[0] == b"HTTP/1.1 200 OK", first
    assert second[0] == b"HTTP/1.1 404 Not Found", second
    assert third[0] == b"HTTP/1.1 200 OK", third
    assert first[2] == third[2]
    assert buffer == b""


def test_connection_close_gets_the_whole_answer_then_the_end(live_server: str) -> None:
    with connect(live_server) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        buffer = bytearray()
        status, headers, _ = read_response(conn, buffer)
        assert status == b"HTTP/1.1 200 OK"
        assert headers.get("connection") == "close"
        assert buffer == b"" and conn.recv(1) == b"", "the server must close after the response"


@pytest.mark.timeout(30)
def test_a_large_file_arrives_whole(live_server: str) -> None:
    expected = (ASSETS / "swagger-ui-bundle.js").read_bytes()
    assert len(expected) > 1_000_000, "the test wants a body far larger than one write"
    with connect(live_server) as conn:
        conn.sendall(f"GET {ASSETS_URL}/swagger-ui-bundle.js HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        status, _, body = read_response(conn, bytearray())
    assert status == b"HTTP/1.1 200 OK"
    assert body == expected


# --- limits -----------------------------------------------------------------------------


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as the end)."""
    received = bytearray()
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return bytes(received)


def assert_refused(answer: bytes, status: bytes, detail: str) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert b"\r\nconnection: close" in head and b"\r\ncontent-type: application/json" in head, head
    assert detail in json.loads(body)["detail"]


def health_request(*headers: bytes) -> bytes:
    return b"GET /health HTTP/1.1\r\nHost: t\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def test_a_head_over_the_cap_gets_431_and_its_connection_closes_while_others_are_served(live_server: str) -> None:
    with connect(live_server) as other, connect(live_server) as conn:
        buffer = bytearray()
        other.sendall(health_request())
        assert read_response(other, buffer)[0] == b"HTTP/1.1 200 OK"

        conn.sendall(health_request(b"X-Big: " + b"a" * MAX_HEAD_BYTES))
        assert_refused(read_until_closed(conn), b"431", "Request head larger than")

        # The other connection is still served, and so is a head just under the cap.
        other.sendall(health_request(b"X-Big: " + b"a" * (MAX_HEAD_BYTES - 100)))
        assert read_response(other, buffer)[0] == b"HTTP/1.1 200 OK"


def test_a_head_over_the_cap_is_refused_when_it_follows_another_request_in_one_write(live_server: str) -> None:
    big = health_request(b"X-Big: " + b"a" * MAX_HEAD_BYTES)
    # Behind a whole request, and behind a body. The connection closes, the big head
    # unanswered; so may be the request before it, unanswered yet (RFC 9112 9.3.2: the
    # client retries).
    with connect(live_server) as conn:
        conn.sendall(health_request() + big)
        assert read_until_closed(conn).count(b"HTTP/1.1 200 OK") < 2
    with connect(live_server) as conn:
        conn.sendall(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n")
        time.sleep(0.1)  # the body and the big head come in a read of their own
        conn.sendall(b"{}" + big)
        assert b"HTTP/1.1 200 OK" not in read_until_closed(conn)


def test_more_headers_than_the_cap_get_431(live_server: str) -> None:
    with connect(live_server) as conn:
        # Host and MAX_HEADERS - 1 others: exactly the cap is served.
        conn.sendall(health_request(*(b"X-%d: v" % i for i in range(MAX_HEADERS - 1))))
        assert read_response(conn, bytearray())[0] == b"HTTP/1.1 200 OK"
        conn.sendall(health_request(*(b"X-%d: v" % i for i in range(MAX_HEADERS))))
        assert_refused(read_until_closed(conn), b"431", f"More than {MAX_HEADERS} request headers")


@pytest.mark.timeout(60)
def test_a_client_sending_50_mb_of_header_is_cut_off_near_the_cap(live_server: str) -> None:
    with connect(live_server) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ")
        chunk, sent = b"a" * 65536, 0
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while sent < 50_000_000:
                sent += conn.send(chunk)
        # What the server read (about the cap and one read) plus what the two kernels buffered.
        assert sent < 8_000_000, f"the server took {sent} bytes of a head before closing"
        assert_refused(read_until_closed(conn), b"431", "Request head larger than")


def test_many_pipelined_requests_in_one_write_are_not_one_big_head(live_server: str) -> None:
    requests = health_request(b"X-Pad: " + b"p" * 1000) * 200  # a read holds several, heads cross reads
    assert len(requests) > 6 * MAX_HEAD_BYTES
    with connect(live_server) as conn:
        conn.sendall(requests)
        buffer = bytearray()
        statuses = [read_response(conn, buffer)[0] for _ in range(200)]
    assert statuses == [b"HTTP/1.1 200 OK"] * 200


# A server of its own for the timeouts: the protocol of `python -m app` with half-second
# limits, serving an app that reads the whole body and answers its length.

QUICK = 0.5


class QuickProtocol(CoalescingHttpToolsProtocol):
    head_timeout = QUICK
    body_timeout = QUICK


async def body_length_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    length, more_body = 0, True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        length += len(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = str(length).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(app: Any, protocol: type[CoalescingHttpToolsProtocol]) -> Iterator[str]:
    """A uvicorn server on `app` with `protocol` in a thread, on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, ws="none", http=protocol)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-quick", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the uvicorn server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def quick_server() -> Iterator[str]:
    with serving(body_length_app, QuickProtocol) as base_url:
        yield base_url


def closed_after(conn: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closes `conn`, and what it sent meanwhile."""
    start = time.monotonic()
    answer = read_until_closed(conn)
    return time.monotonic() - start, answer


def test_a_head_that_never_ends_is_closed_after_the_head_timeout(quick_server: str) -> None:
    with connect(quick_server) as conn:
        # An idle keep-alive connection is left to uvicorn's timeout_keep_alive (5 s)...
        buffer = bytearray()
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(conn, buffer)[2] == b"0"
        time.sleep(2 * QUICK)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(conn, buffer)[2] == b"0"
        # ...but a head that starts and never ends is not.
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        elapsed, answer = closed_after(conn)
    assert QUICK * 0.8 < elapsed < QUICK + 4, elapsed
    assert_refused(answer, b"408", "Request head not received in time")


def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(quick_server: str) -> None:
    with connect(quick_server) as conn:
        elapsed, answer = closed_after(conn)
    assert QUICK * 0.8 < elapsed < QUICK + 4, elapsed
    assert answer == b"", "no request, no answer"


def test_a_body_that_stops_arriving_is_closed_after_the_body_timeout(quick_server: str) -> None:
    with connect(quick_server) as conn:
        # A body in pieces, all within the deadline, is served...
        buffer = bytearray()
        conn.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n0123456789")
        time.sleep(QUICK / 5)
        conn.sendall(b"0123456789")
        assert read_response(conn, buffer)[2] == b"20"
        # ...one that stops arriving is not.
        conn.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789")
        elapsed, answer = closed_after(conn)
    assert QUICK * 0.8 < elapsed < QUICK + 4, elapsed
    assert_refused(answer, b"408", "Request body not received in time")


def test_a_small_head_with_a_body_larger_than_the_cap_in_one_write_is_served(quick_server: str) -> None:
    body = b"x" * (4 * MAX_HEAD_BYTES)
    with connect(quick_server) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert read_response(conn, bytearray())[2] == str(len(body)).encode()
