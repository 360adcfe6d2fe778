"""The server protocol (app/serving.py): a response leaves in one write, and nothing is lost or reordered.

The transport is checked on a real event loop against a transport that records its
writes; the protocol on a live uvicorn server (the options `python -m app` uses), over
raw sockets, with keep-alive, pipelining, `Connection: close` and a large file.
"""

import asyncio
import socket
from typing import Any

import pytest

from app.http.docs import ASSETS, ASSETS_URL
from app.http.serving import UVICORN_OPTIONS, CoalescingHttpToolsProtocol, WriteCoalescingTransport


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
