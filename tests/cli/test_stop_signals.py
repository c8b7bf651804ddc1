"""`m2mauth serve` and `serve-http`: the first SIGTERM/SIGINT stops gracefully, a second at once."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from m2mauth.cli import STOP_SIGNALS, stop_on_signals


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restored_handlers")
@pytest.mark.parametrize("first", STOP_SIGNALS)
def test_the_first_signal_asks_to_stop_and_steps_aside(first: signal.Signals) -> None:
    stop = stop_on_signals()
    assert not stop.is_set()
    handler = signal.getsignal(first)
    assert callable(handler)
    handler(first, None)
    assert stop.is_set()
    # A second signal must not run the handler again (it could land inside
    # stop.set() and deadlock on its lock): it gets the default action.
    assert all(signal.getsignal(sig) == signal.SIG_DFL for sig in STOP_SIGNALS)
