"""Repeated log lines are rate-limited: a flood of one error cannot fill the disk."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from m2mauth import logs
from m2mauth.logs import RepeatedLinesFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lines(clock: Clock) -> Iterator[Lines]:
    handler = logs.rate_limit_repeated_lines(Lines(), burst=3, interval=10, monotonic=clock)
    logger = logging.getLogger("m2mauth.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    logger.propagate = True


def test_a_flood_of_one_kind_is_cut_to_a_burst_and_one_summary(lines: Lines, clock: Clock) -> None:
    log = logging.getLogger("m2mauth.test_logs")
    for i in range(200):
        # The arguments vary (a peer, a path): still one kind of line.
        try:
            raise ValueError(i)
        except ValueError:
            log.exception("malformed request from %s", f"peer-{i}")
    assert lines.messages == [f"malformed request from peer-{i}" for i in range(3)]
    clock.now += 10
    log.info("something else")
    assert lines.messages[3:] == [
        "suppressed 197 similar lines in 10 s: 'malformed request from %s'",
        "something else",
    ]
    assert lines.records[3].levelno == logging.ERROR
    assert lines.records[3].exc_info is None
    # A new window lets a new burst through.
    log.exception("malformed request from %s", "again")
    assert lines.messages[-1] == "malformed request from again"


def test_kinds_are_counted_apart(lines: Lines) -> None:
    log = logging.getLogger("m2mauth.test_logs")
    for _ in range(5):
        log.warning("one")
        log.warning("two")
        log.error("one")  # another level: another kind
    assert sorted(lines.messages) == sorted(["one", "two", "one"] * 3)


def test_the_table_of_kinds_is_bounded(clock: Clock) -> None:
    summaries: list[logging.LogRecord] = []
    limiter = RepeatedLinesFilter(summaries.append, burst=0, interval=3600, monotonic=clock)
    for i in range(5000):
        record = logging.LogRecord("x", logging.ERROR, "", 0, f"formatted {i}", None, None)
        assert not limiter.filter(record)
    # The oldest kinds were closed, each summarised, and the table stayed bounded.
    assert len(limiter._windows) <= 1024
    assert len(summaries) == 5000 - len(limiter._windows)


def test_configure_rate_limits_the_servers_log(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    saved_limiter = logs._Configured.limiter
    try:
        logs.configure("INFO", "json")
        stream = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        for i in range(100):
            logging.getLogger("m2mauth.flood").warning("bad request %d", i)
        assert len(stream.getvalue().splitlines()) == logs.REPEATED_LINES_BURST
        # A line gate asks the same filter: past the burst, no record is made at all.
        gate = logs.line_gate("m2mauth.flood", logging.WARNING, "bad request %d")
        assert gate() is False
        assert logs.line_gate("m2mauth.flood", logging.WARNING, "other %d")() is True
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logs._Configured.limiter = saved_limiter


def test_a_line_gate_drops_what_the_filter_would_and_counts_it(clock: Clock) -> None:
    """Asked before a record is made: the same burst, the same summary, the
    same new window, as if every line had been made and filtered."""
    written: list[logging.LogRecord] = []
    limiter = RepeatedLinesFilter(written.append, burst=3, interval=10, monotonic=clock)
    key = ("m2mauth.tokens", logging.INFO, "token issued")

    def issue() -> None:
        if limiter.admits(key):
            record = logging.LogRecord(*key[:2], "", 0, key[2], None, None)
            if limiter.filter(record):
                written.append(record)

    for _ in range(50):
        issue()
    assert [r.getMessage() for r in written] == ["token issued"] * 3
    clock.now += 10
    issue()
    assert [r.getMessage() for r in written[3:]] == [
        "suppressed 47 similar lines in 10 s: 'token issued'",
        "token issued",
    ]
    # Another kind is untouched by this one's window.
    assert limiter.admits(("m2mauth.tokens", logging.INFO, "other"))
