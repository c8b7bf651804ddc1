"""Fetching a partner's JWK Set from its jwks_uri (m2mauth.remote_jwks) against real
HTTP(S) servers on loopback: the bounds (time, size, redirects, scheme), the cache
and its refresh, and the whole path through the shim on a --dev server."""

from __future__ import annotations

import contextlib
import http.server
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from m2mauth.core.applications import ApplicationFields
from m2mauth.core.models import TokenEndpointAuthMethod
from m2mauth.core.private_key_jwt import JWT_BEARER_ASSERTION_TYPE
from m2mauth.remote_jwks import RemoteJwksCache, public_address
from m2mauth.store.schema import migrate
from m2mauth.store.sql import SqlStore
from tests.assertions import assertion, jwks_of, new_key
from tests.certs import TestCA
from tests.http.conftest import ENV, running_shim


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0  # seconds between the body's bytes (a slow-loris server)


@dataclass
class JwksHost:
    """A loopback HTTP(S) server answering each path as the test says."""

    port: int
    scheme: str
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def serve(self, path: str, jwks: str) -> str:
        self.routes[path] = Route(body=jwks.encode())
        return self.url(path)


@contextmanager
def jwks_host(tls: ssl.SSLContext | None = None) -> Iterator[JwksHost]:
    host = JwksHost(port=0, scheme="https" if tls else "http")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.hits.append(self.path)
            route = host.routes.get(self.path, Route(status=404))
            time.sleep(route.delay)
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            # The client may give up first (the size or time bound): expected.
            with contextlib.suppress(OSError):
                if not route.drip:
                    self.wfile.write(route.body)
                for byte in route.body if route.drip else b"":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(route.drip)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    host.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dev_cache(**kwargs: object) -> RemoteJwksCache:
    return RemoteJwksCache(allow_http_loopback=True, **kwargs)  # type: ignore[arg-type]


def kid_of(jwks: str | None) -> list[str]:
    assert jwks is not None
    return [k["kid"] for k in json.loads(jwks)["keys"]]


def test_a_set_is_fetched_cached_and_refreshed_at_most_so_often() -> None:
    clock = Monotonic()
    old, new = new_key("ES256"), new_key("EdDSA")
    with jwks_host() as host:
        uri = host.serve("/jwks.json", jwks_of(old))
        cache = dev_cache(monotonic=clock, cache_seconds=300, min_refetch_seconds=30)
        assert kid_of(cache.get(uri)) == [old.kid]
        assert kid_of(cache.get(uri)) == [old.kid]
        assert host.hits == ["/jwks.json"]  # answered from the cache
        host.serve("/jwks.json", jwks_of(new))
        # A refresh right after a fetch is refused (a stream of made-up kids).
        assert kid_of(cache.get(uri, refresh=True)) == [old.kid]
        assert len(host.hits) == 1
        clock.now += 31
        assert kid_of(cache.get(uri, refresh=True)) == [new.kid]
        assert len(host.hits) == 2
        # Expired: fetched again without being asked to refresh.
        clock.now += 301
        assert kid_of(cache.get(uri)) == [new.kid]
        assert len(host.hits) == 3


def test_a_failing_host_is_not_asked_again_at_once_and_an_old_set_expires() -> None:
    clock = Monotonic()
    key = new_key()
    with jwks_host() as host:
        uri = host.serve("/jwks.json", jwks_of(key))
        cache = dev_cache(monotonic=clock, cache_seconds=300, min_refetch_seconds=30)
        assert kid_of(cache.get(uri)) == [key.kid]
        host.routes["/jwks.json"] = Route(status=503)
        clock.now += 31
        # The refresh fails: the cached set is still usable until its cache time.
        assert kid_of(cache.get(uri, refresh=True)) == [key.kid]
        clock.now += 300
        # Past its cache time, and the host still failing: nothing is usable.
        assert cache.get(uri) is None
        hits = len(host.hits)
        assert cache.get(uri) is None  # remembered: not asked again at once
        assert len(host.hits) == hits


def test_a_redirect_is_followed_on_the_same_host_only() -> None:
    key = new_key()
    with jwks_host() as host:
        host.serve("/real.json", jwks_of(key))
        host.routes["/moved"] = Route(status=302, headers={"Location": "/real.json"})
        assert kid_of(dev_cache().get(host.url("/moved"))) == [key.kid]
        # "localhost" and 127.0.0.1 are one machine but two hosts: refused.
        host.routes["/away"] = Route(
            status=307, headers={"Location": host.url("/real.json", host="localhost")}
        )
        before = len(host.hits)
        assert dev_cache().get(host.url("/away")) is None
        assert host.hits[before:] == ["/away"]
        host.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
        assert dev_cache().get(host.url("/loop")) is None


def test_an_oversized_or_slow_or_bad_answer_is_not_used() -> None:
    key = new_key()
    padding = {"keys": [key.public_jwk], "padding": "x" * (70 * 1024)}
    with jwks_host() as host:
        host.routes["/big"] = Route(body=json.dumps(padding).encode())
        assert dev_cache().get(host.url("/big")) is None
        host.routes["/slow"] = Route(body=jwks_of(key).encode(), delay=2.0)
        started = time.monotonic()
        assert dev_cache(timeout_seconds=0.5).get(host.url("/slow")) is None
        assert time.monotonic() - started < 1.5
        private = {"keys": [{**key.public_jwk, "d": "c2VjcmV0"}]}
        host.routes["/private"] = Route(body=json.dumps(private).encode())
        assert dev_cache().get(host.url("/private")) is None
        host.routes["/html"] = Route(body=b"<html>hello</html>")
        assert dev_cache().get(host.url("/html")) is None


def test_plain_http_is_for_loopback_on_a_dev_server_only(tmp_path: Path) -> None:
    key = new_key()
    with jwks_host() as host:
        uri = host.serve("/jwks.json", jwks_of(key))
        assert RemoteJwksCache().get(uri) is None
        assert host.hits == []  # refused before any request
    ca = TestCA(tmp_path / "ca")
    leaf = ca.issue("jwks-host")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(leaf.cert_path, leaf.key_path)
    client_tls = ssl.create_default_context(cafile=str(ca.cert_path))
    with jwks_host(server_tls) as host:
        uri = host.serve("/jwks.json", jwks_of(key))
        # Outside --dev only public addresses are fetched from, https included.
        assert RemoteJwksCache(ssl_context=client_tls).get(uri) is None
        assert host.hits == []
        internal = RemoteJwksCache(ssl_context=client_tls, allow_internal_addresses=True)
        assert kid_of(internal.get(uri)) == [key.kid]
        # An https redirect to http on the same host and port is another origin.
        host.routes["/down"] = Route(
            status=301, headers={"Location": uri.replace("https://", "http://")}
        )
        internal = RemoteJwksCache(ssl_context=client_tls, allow_internal_addresses=True)
        assert internal.get(host.url("/down")) is None


def test_only_public_addresses_outside_dev() -> None:
    """Loopback, private, link-local (cloud metadata), shared and reserved ranges
    are the server's own network: a partner's URL must not reach into it."""
    for internal in (
        "127.0.0.1",
        "10.0.0.5",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fc00::1",
        "fe80::1%eth0",
        "::ffff:10.0.0.1",
        "224.0.0.1",
    ):
        assert not public_address(internal), internal
    for public in ("8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"):
        assert public_address(public), public


def test_a_host_dripping_its_answer_cannot_hold_fetches_past_the_timeout() -> None:
    """Each byte comes inside the socket timeout; the whole exchange still ends at
    its bound, and requests waiting for the same URL wait no longer."""
    key = new_key()
    with jwks_host() as host:
        host.routes["/slow"] = Route(body=jwks_of(key).encode(), drip=0.05)
        cache = dev_cache(timeout_seconds=1.0)
        results: list[float] = []

        def fetch() -> None:
            started = time.monotonic()
            assert cache.get(host.url("/slow")) is None
            results.append(time.monotonic() - started)

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(results) == 4
        # The body would take 0.05 s x its length (several seconds) to arrive.
        assert len(jwks_of(key)) * 0.05 > 5
        assert max(results) < 2.5, results


def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on 9
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with jwks_host() as host:
        assert kid_of(dev_cache().get(host.serve("/jwks.json", jwks_of(key)))) == [key.kid]


def test_one_issuers_refused_discovery_does_not_stand_for_another() -> None:
    """Discovery answers are kept per issuer and apart from JWK Sets: an issuer
    spelled with a trailing slash (refused: the document names it without) does
    not poison the real one, and a discovery URL is never a JWK Set."""
    key = new_key()
    with jwks_host() as host:
        issuer = host.url("/iss")
        host.serve("/iss/jwks", jwks_of(key))
        document = {"issuer": issuer, "jwks_uri": host.url("/iss/jwks")}
        host.routes["/iss/.well-known/openid-configuration"] = Route(
            body=json.dumps(document).encode()
        )
        cache = dev_cache()
        assert cache.issuer_jwks(issuer + "/") is None
        assert kid_of(cache.issuer_jwks(issuer)) == [key.kid]
        assert cache.get(host.url("/iss/.well-known/openid-configuration")) is None


def test_a_partner_publishing_its_keys_gets_tokens_from_a_dev_shim(sqlite_url: str) -> None:
    """End to end: the application names a jwks_uri (http to loopback: a --dev
    server); the shim fetches it and checks assertions against it."""
    migrate(sqlite_url)
    store = SqlStore(sqlite_url)
    old, new = new_key("ES256"), new_key("RS256")
    try:
        with jwks_host() as host, running_shim(store, "in_process", dev=True) as shim:
            uri = host.serve(f"/{secrets.token_hex(4)}/jwks.json", jwks_of(old))
            org = shim.container.organizations.create(ENV, "Partner", "", True)
            app = shim.container.applications.create(
                ENV,
                org.id,
                ApplicationFields(
                    name="by-uri",
                    token_endpoint_auth_method=TokenEndpointAuthMethod.PRIVATE_KEY_JWT,
                    jwks_uri=uri,
                ),
            )

            def post(signed: str) -> httpx.Response:
                return httpx.post(
                    f"{shim.base_url}/oauth2/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_assertion_type": JWT_BEARER_ASSERTION_TYPE,
                        "client_assertion": signed,
                    },
                    timeout=10,
                )

            first = post(assertion(old, app.client_id, shim.token_endpoint))
            assert first.status_code == 200, first.text
            assert host.hits == [urlsplit(uri).path]
            # A key the partner does not publish: refused. Its unknown kid asks
            # for a refresh, but the set was fetched less than 30 s ago: the host
            # is not asked again (made-up kids cannot make the server hammer it).
            stranger = post(assertion(new, app.client_id, shim.token_endpoint))
            assert (stranger.status_code, stranger.json()["error"]) == (401, "invalid_client")
            assert post(assertion(old, app.client_id, shim.token_endpoint)).status_code == 200
            assert len(host.hits) == 1
    finally:
        store.close()


def test_concurrent_requests_for_one_url_make_one_fetch() -> None:
    key = new_key()
    with jwks_host() as host:
        host.routes["/slow.json"] = Route(body=jwks_of(key).encode(), delay=0.3)
        cache = dev_cache()
        start = threading.Barrier(8)
        results: list[str | None] = []

        def get() -> None:
            start.wait()
            results.append(cache.get(host.url("/slow.json")))

        threads = [threading.Thread(target=get) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert [kid_of(r) for r in results] == [[key.kid]] * 8
        assert host.hits == ["/slow.json"]
