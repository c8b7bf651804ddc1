"""The in-process backend runs store-free calls on the event loop, and the rest on a
thread (m2mauth.core.blocking)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from m2mauth.core.blocking import WouldBlock, check_may_block, non_blocking
from m2mauth.grpc.token_servicer import TokenServicer
from m2mauth.http.backend import InProcessBackend
from m2mauth.store.sql import SqlStore
from m2mauth.v1 import token_service_pb2 as pb
from tests.http.conftest import running_shim
from tests.token_requests import secret_request


def test_store_access_inside_non_blocking_raises_would_block(store: SqlStore) -> None:
    with non_blocking(), pytest.raises(WouldBlock):
        store.ping()
    with non_blocking(), pytest.raises(WouldBlock), store.unit_of_work():
        pass
    store.ping()  # outside: it waits, as usual
    check_may_block()


def test_only_sqlite_reads_may_run_where_blocking_is_not_allowed(store: SqlStore) -> None:
    with non_blocking():
        if store.reads_block:  # PostgreSQL: a network round trip
            with pytest.raises(WouldBlock), store.reading():
                pass
        else:
            with store.reading() as uow:
                assert uow.get_organization("org_" + "0" * 26) is None


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


def test_issue_runs_on_the_loop_once_the_client_is_cached(store: SqlStore) -> None:
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
        if store.reads_block:
            # First: a cache miss noticed on the loop (WouldBlock), re-run on a
            # thread. Second: answered from the cache, on the loop.
            assert threads == [loop_thread, threads[1], loop_thread]
            assert threads[1] != loop_thread
        else:
            # SQLite: the cache miss is a read, which runs on the loop too.
            assert threads == [loop_thread, loop_thread]
        # Usage counted once per token, not per attempt (the inline try has no effects).
        assert [u.tokens_issued for u in tokens.usage._pending.values()] == [2]


def test_introspection_reads_on_the_loop_only_on_sqlite(store: SqlStore) -> None:
    with running_shim(store, "in_process") as shim:
        partner = shim.partner()
        tokens = shim.container.tokens
        issued = tokens.issue_token(secret_request(partner.client_id, partner.client_secret))
        token = issued.access_token
        servicer = RecordingServicer(TokenServicer(tokens, shim.container.admin_keys))
        backend = InProcessBackend(servicer, store.ping, threads=1)
        request = pb.IntrospectRequest(
            token=token, client_id=partner.client_id, client_secret=partner.client_secret
        )

        async def introspect() -> tuple[str, bool]:
            reply = await backend.introspect(request, None)
            return threading.current_thread().name, reply.active

        loop_thread, active = anyio.run(introspect)
        assert active
        if store.reads_block:  # PostgreSQL: noticed on the loop, run on a thread
            assert servicer.threads[0] == loop_thread
            assert servicer.threads[1:] != [loop_thread]
            assert len(servicer.threads) == 2
        else:
            assert servicer.threads == [loop_thread]
