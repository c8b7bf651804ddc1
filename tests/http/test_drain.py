"""The HTTP server's graceful stop: not ready first, then a drain bounded by the
grace period, where a request still running at its end gets RFC 6749's JSON 503."""

from __future__ import annotations

import threading
import time

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from m2mauth.http.server import STOP_MARGIN_SECONDS, bind, start_http_server


def test_not_ready_then_a_request_running_past_the_grace_period_gets_a_json_503() -> None:
    release = threading.Event()
    entered = threading.Event()

    async def slow(request: Request) -> Response:
        entered.set()
        # A handler waiting in a thread, as one waiting for a hung database does:
        # cancelling it does not end the wait.
        await anyio.to_thread.run_sync(release.wait, 30)
        return PlainTextResponse("done\n")

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ready\n")

    app = Starlette(routes=[Route("/slow", slow), Route("/readyz", ready)])
    server = start_http_server(app, bind("127.0.0.1", 0), grace=1.0)
    url = f"http://127.0.0.1:{server.port}"
    answer: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answer.append(httpx.get(f"{url}/slow", timeout=30)))
    try:
        assert httpx.get(f"{url}/readyz").status_code == 200
        server.not_ready()
        # Not ready, and still serving.
        assert httpx.get(f"{url}/readyz").status_code == 503
        caller.start()
        assert entered.wait(10)
        began = time.monotonic()
        server.begin_stop(1.0)
        caller.join(10)
        answered = time.monotonic() - began
        assert server.wait_stopped()
        stopped = time.monotonic() - began
    finally:
        release.set()
    [response] = answer
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == "temporarily_unavailable"
    assert 0.9 < answered < 1.5, answered
    # Not waiting for the abandoned handler: the grace period and a fraction of a second.
    assert stopped < 1.0 + STOP_MARGIN_SECONDS / 2, stopped
