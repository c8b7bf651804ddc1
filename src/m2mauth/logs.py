"""Structured logging: one JSON object per line, with the record's extra fields,
and repeated lines rate-limited so that a flood of bad requests cannot fill the disk."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

# Attributes every LogRecord has; anything else was passed in `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _not_alembic_chatter(record: logging.LogRecord) -> bool:
    # Alembic names its dialect ("Context impl SQLiteImpl.", "Will assume ...") each
    # time the schema is read, at every start: noise around the line that matters.
    # What it runs ("Running upgrade ...") is kept.
    return not (
        record.name == "alembic.runtime.migration"
        and str(record.msg).startswith(("Context impl", "Will assume"))
    )


# A burst of this many lines of one kind per interval is logged; the rest are counted.
REPEATED_LINES_BURST = 10
REPEATED_LINES_INTERVAL_SECONDS = 60.0
# Kinds remembered at once; beyond it the oldest window is closed (and summarised) early,
# so messages formatted with varying text cannot grow the table without bound.
_MAX_KINDS = 1024
_SUMMARY = "_m2mauth_summary"


@dataclass
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0
    template: str = ""
    logger: str = ""
    level: int = logging.WARNING


class RepeatedLinesFilter(logging.Filter):
    """Lets the first ``burst`` lines of one kind through per ``interval``, then counts.

    A kind is the logger, the level and the message *template* (``record.msg``,
    before its arguments are filled in), so a flood of one error with a varying
    peer address or path is still one kind. When a window with suppressed lines
    ends, one summary line ("suppressed K similar lines") is written in its
    place; windows are closed lazily, when the next line of any kind arrives.
    Without this, a client sending malformed requests as fast as it can makes
    the server write a line, or a traceback, per request: 200 requests gave
    94 KiB of log in 0.2 s.
    """

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        *,
        burst: int = REPEATED_LINES_BURST,
        interval: float = REPEATED_LINES_INTERVAL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._emit = emit
        self._burst = burst
        self._interval = interval
        self._monotonic = monotonic
        self._windows: OrderedDict[tuple[str, int, str], _Window] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False):
            return True
        now = self._monotonic()
        key = (record.name, record.levelno, str(record.msg))
        with self._lock:
            ended = self._close_ended_windows(now)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(
                    started=now, template=key[2], logger=record.name, level=record.levelno
                )
                while len(self._windows) > _MAX_KINDS:
                    ended.append(self._windows.popitem(last=False)[1])
            allowed = window.passed < self._burst
            if allowed:
                window.passed += 1
            else:
                window.suppressed += 1
        for closed in ended:
            self._summarise(closed)
        return allowed

    def admits(self, key: tuple[str, int, str]) -> bool:
        """Whether a line of this kind (logger, level, template) would be written
        now, asked before its record is made. False only while its window has
        used its burst: the line is then counted as suppressed, as :meth:`filter`
        would have. True leaves the decision to :meth:`filter`."""
        window = self._windows.get(key)
        if window is None or window.passed < self._burst:
            return True
        with self._lock:
            window = self._windows.get(key)
            if window is None or self._monotonic() - window.started >= self._interval:
                return True  # ended: filter() closes and summarises it
            if window.passed < self._burst:
                return True
            window.suppressed += 1
            return False

    def _close_ended_windows(self, now: float) -> list[_Window]:
        ended: list[_Window] = []
        for key in list(self._windows):
            window = self._windows[key]
            if now - window.started < self._interval:
                # Windows are kept in start order: the rest started later.
                break
            del self._windows[key]
            ended.append(window)
        return ended

    def _summarise(self, window: _Window) -> None:
        if not window.suppressed:
            return
        summary = logging.LogRecord(
            window.logger,
            window.level,
            __file__,
            0,
            "suppressed %d similar lines in %.0f s: %r",
            (window.suppressed, self._interval, window.template),
            None,
        )
        setattr(summary, _SUMMARY, True)
        self._emit(summary)


H = TypeVar("H", bound=logging.Handler)


def rate_limit_repeated_lines(handler: H, **options: Any) -> H:
    """Install a :class:`RepeatedLinesFilter` on ``handler`` (every logger's lines pass
    a handler's filters; a logger's filters miss its children's lines)."""
    _install_limiter(handler, **options)
    return handler


def _install_limiter(handler: logging.Handler, **options: Any) -> RepeatedLinesFilter:
    limiter = RepeatedLinesFilter(handler.handle, **options)
    handler.addFilter(limiter)
    return limiter


class _Configured:
    """The filter of the handler configure() installed, which line_gate() asks."""

    limiter: RepeatedLinesFilter | None = None


def line_gate(logger: str, level: int, template: str) -> Callable[[], bool]:
    """A check to make before logging one hot line: whether it would be written.

    A line per token issued is written ten times a minute at full rate; the rest
    are counted and dropped by the filter, but only after their LogRecord is made
    (the caller's frame looked up, the record filled, the filter's lock taken):
    about 18 us of the ~195 us an ES256 issuance costs in process. Asked first,
    a dropped line costs a dictionary lookup. Without configure() (tools, tests)
    every line is made and the handlers decide."""
    key = (logger, level, template)

    def gate() -> bool:
        limiter = _Configured.limiter
        return limiter is None or limiter.admits(key)

    return gate


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    _Configured.limiter = _install_limiter(handler)
    handler.addFilter(_not_alembic_chatter)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
