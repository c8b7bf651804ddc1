"""The in-process backend runs store-free calls on the event loop, and the rest on a
thread (m2mauth.core.blocking)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from m2mauth.core.blocking import WouldBlock, check_may_block, non_blocking
from m2mauth.core.interfaces import Store
from m2mauth.grpc.token_servicer import TokenServicer
from m2mauth.http.backend import InProcessBackend
from m2mauth.v1 import token_service_pb2 as pb
from tests.http.conftest import running_shim


def test_store_access_inside_non_blocking_raises_would_block(store: Store) -> None:
    with non_blocking(), pytest.raises(WouldBlock):
        store.ping()
    with non_blocking(), pytest.raises(WouldBlock), store.unit_of_work():
        pass
    store.ping()  # outside: it waits, as usual
    check_may_block()


def test_would_block_is_not_an_exception() -> None:
    # So `except Exception` handlers (INTERNAL errors) let it through.
    assert not issubclass(WouldBlock, Exception)


class RecordingServicer:
    """The real servicer, noting the thread each call ran on."""

    def __init__(self, inner: TokenServicer) -> None:
        self.inner = inner
        self.threads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(request: Any, context: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            return method(request, context)

        return call


def test_issue_runs_on_the_loop_once_the_client_is_cached(store: Store) -> None:
    with running_shim(store, "in_process") as shim:
        partner = shim.partner()
        tokens = shim.container.tokens
        servicer = RecordingServicer(TokenServicer(tokens, shim.container.admin_keys))
        backend = InProcessBackend(servicer, store.ping)
        request = pb.IssueTokenRequest(
            grant_type="client_credentials",
            client_id=partner.client_id,
            client_secret=partner.client_secret,
        )

        async def issue_twice() -> tuple[str, list[str]]:
            loop_thread = threading.current_thread().name
            for _ in range(2):
                reply = await backend.issue_token(request)
                assert reply.access_token
            return loop_thread, servicer.threads

        loop_thread, threads = anyio.run(issue_twice)
        # First: a cache miss noticed on the loop (WouldBlock), re-run on a thread.
        # Second: answered from the cache, on the loop.
        assert threads[0] == loop_thread
        assert threads[1] != loop_thread
        assert threads[2] == loop_thread
        assert len(threads) == 3
        # Usage counted once per token, not per attempt (the inline try has no effects).
        assert [u.tokens_issued for u in tokens.usage._pending.values()] == [2]
