"""Marking code that must not wait on the store, and noticing when it would.

The HTTP shim runs on an event loop. Most token requests never touch the
store (the client is in the authenticator's cache, the key is in memory), so
it runs them on the loop itself: handing CPU-bound work to a thread costs a
GIL hand-off each way, and under load the loop and the threads convoy on the
GIL (measured: p99 of ES256 issuance ~400 ms with the hop, ~45 ms without, at
32 connections). A request that does need the store is noticed before any
I/O by :func:`check_may_block` and re-run on a thread, so a slow or
unreachable database never stalls the loop.

Reads of the embedded SQLite database are the exception (SqlStore.reading):
in WAL mode they wait for no lock and cost tens of microseconds, less than
the hand-off. Measured on introspection (which reads the store every time),
2 processes, 64 connections: 2,700/s on a thread, 4,100/s on the loop.
Should one find the database locked all the same, it raises WouldBlock
rather than wait on the loop; what ran before it was reads and last-used
timestamps, which are safe to run again on the thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_NON_BLOCKING = contextvars.ContextVar("m2mauth_non_blocking", default=False)


class WouldBlock(BaseException):
    """Raised inside :func:`non_blocking` where the code would wait on the store.

    A BaseException: the handlers that turn every ``Exception`` into an
    INTERNAL error must let it through to whoever asked for non-blocking work.
    """


@contextmanager
def non_blocking() -> Iterator[None]:
    """Within this block, store access raises WouldBlock instead of waiting."""
    token = _NON_BLOCKING.set(True)
    try:
        yield
    finally:
        _NON_BLOCKING.reset(token)


def may_block() -> bool:
    """Whether waiting (on the store, or on a lock held across store work) is allowed here."""
    return not _NON_BLOCKING.get()


def check_may_block() -> None:
    """Call before waiting on the store."""
    if _NON_BLOCKING.get():
        raise WouldBlock
