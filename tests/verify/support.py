"""Test doubles for the verify kit: signing keys, a token minter, and a local issuer over real HTTP.

``LocalIssuer`` plays the parts of m2mauth a protected API talks to: ``GET /jwks``
(with ``Cache-Control``) and ``POST /introspect``, on 127.0.0.1 port 0, counting
every request so tests can prove what was (not) fetched.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://auth.example.com"
AUDIENCE = "https://api.example.com"
ORG_ID = "org_01HQZX3J5M8K2P4R6T8V0W2Y4A"
OTHER_ORG_ID = "org_01HQZX3J5M8K2P4R6T8V0W2Y4B"
CLIENT_ID = "client_01HQZX3J5M8K2P4R6T8V0W2Y4C"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey
    public_jwk: dict[str, Any]

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def make_key(alg: str, kid: str | None = None, *, rsa_bits: int = 2048) -> SigningKey:
    kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:12]}"
    private: PrivateKey
    if alg.startswith(("RS", "PS")):
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(alg)
    return SigningKey(kid, alg, private, {**jwk, "kid": kid, "alg": alg, "use": "sig"})


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims m2mauth puts in an access token; ``overrides`` of None drop a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": CLIENT_ID,
        "client_id": CLIENT_ID,
        "org_id": ORG_ID,
        "aud": AUDIENCE,
        "scope": "projects:read projects:write",
        "iat": now,
        "exp": now + 300,
        "jti": f"tok_{uuid.uuid4().hex}",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def mint(key: SigningKey, *, headers: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
    """A token signed as an m2mauth server signs it: typ at+jwt, kid, RFC 9068 claims."""
    header: dict[str, Any] = {"typ": "at+jwt", "kid": key.kid, **(headers or {})}
    header = {k: v for k, v in header.items() if v is not None}
    return jwt.encode(claims(**claim_overrides), key.private, algorithm=key.alg, headers=header)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS built by hand, for tokens pyjwt refuses to produce."""
    return ".".join(
        [
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(payload).encode()),
            b64url(signature),
        ]
    )


def hmac_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token "signed" with ``secret`` (e.g. a public key): the alg-confusion attack."""
    signing_input = ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode())]
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class LocalIssuer:
    """A real HTTP server on 127.0.0.1:0 serving a JWK Set and an introspection endpoint."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    cache_control: str | None = "public, max-age=300"
    jwks_status: int = 200
    jwks_body: bytes | None = None  # overrides the JSON of ``keys``
    jwks_delay: float = 0.0
    #: token -> introspection answer; unknown tokens are {"active": false}.
    introspection: dict[str, dict[str, Any]] = field(default_factory=dict)
    introspection_status: int = 200
    introspection_delay: float = 0.0
    hits: Counter[str] = field(default_factory=Counter)
    introspection_requests: list[tuple[dict[str, str], dict[str, str]]] = field(
        default_factory=list
    )
    extra_routes: dict[str, Callable[[], tuple[int, dict[str, str], bytes]]] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, *keys: SigningKey) -> None:
        self.keys = [k.public_jwk for k in keys]

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def _record(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1

    @contextmanager
    def running(self) -> Iterator[str]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                issuer._record(self.path)
                if self.path in issuer.extra_routes:
                    self._send(*issuer.extra_routes[self.path]())
                    return
                if self.path != "/jwks":
                    self._send(404, {}, b"not found")
                    return
                if issuer.jwks_delay:
                    time.sleep(issuer.jwks_delay)
                headers = {"Content-Type": "application/json"}
                if issuer.cache_control is not None:
                    headers["Cache-Control"] = issuer.cache_control
                body = issuer.jwks_body
                if body is None:
                    body = json.dumps({"keys": issuer.keys}).encode()
                self._send(issuer.jwks_status, headers, body)

            def do_POST(self) -> None:
                issuer._record(self.path)
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path != "/introspect":
                    self._send(404, {}, b"not found")
                    return
                with issuer._lock:
                    issuer.introspection_requests.append((dict(self.headers.items()), form))
                if issuer.introspection_delay:
                    time.sleep(issuer.introspection_delay)
                if issuer.introspection_status != 200:
                    self._send(issuer.introspection_status, {}, b'{"error": "server_error"}')
                    return
                answer = issuer.introspection.get(form.get("token", ""), {"active": False})
                self._send(200, {"Content-Type": "application/json"}, json.dumps(answer).encode())

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


# --- serving an ASGI app for real ------------------------------------------------------


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 port 0 in a thread; yield its base URL."""

    class Server(uvicorn.Server):
        def install_signal_handlers(self) -> None:  # not the main thread
            return None

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: Any


def http_call(
    url: str,
    *,
    token: str | None = None,
    method: str = "GET",
    json_body: Any = None,
    headers: list[tuple[str, str]] | None = None,
) -> HttpReply:
    """One request with urllib; any status is returned with its lower-cased headers."""
    request = urllib.request.Request(url, method=method)  # noqa: S310 - test URL on 127.0.0.1
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in headers or []:
        request.add_unredirected_header(name, value)
    data = None if json_body is None else json.dumps(json_body).encode()
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=10) as response:  # noqa: S310
            status, raw_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, raw_headers, raw = err.code, err.headers, err.read()
    body = json.loads(raw) if raw and raw_headers.get_content_type() == "application/json" else raw
    return HttpReply(status, {k.lower(): v for k, v in raw_headers.items()}, body)
