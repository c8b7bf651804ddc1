"""Single-process CPU rates: raw ``cryptography`` signing and verifying (the
ceiling a token server cannot beat per core), and the ``m2mauth.verify`` kit."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from m2mauth.verify import TokenVerifier

CHECK_EVERY = 25


@dataclass(frozen=True, slots=True)
class Rate:
    operations: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.operations / self.cpu_seconds if self.cpu_seconds else 0.0


def measure(operation: Callable[[], object], seconds: float) -> Rate:
    """Call ``operation`` back to back for ``seconds`` in this thread."""
    operation()  # first-call costs (lazy imports, key caches) are not the rate
    count = 0
    cpu0 = time.process_time()
    began = time.perf_counter()
    deadline = began + seconds
    now = began
    while now < deadline:
        for _ in range(CHECK_EVERY):
            operation()
        count += CHECK_EVERY
        now = time.perf_counter()
    return Rate(count, now - began, time.process_time() - cpu0)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_input() -> bytes:
    """A JWT signing input of the size m2mauth signs (header.claims)."""
    header = {"alg": "ES256", "kid": "key_" + "0" * 26, "typ": "at+jwt"}
    claims = {
        "iss": "http://127.0.0.1:8080",
        "sub": "client_" + "0" * 26,
        "aud": "http://127.0.0.1:8080",
        "client_id": "client_" + "0" * 26,
        "org_id": "org_" + "0" * 26,
        "iat": 1_800_000_000,
        "exp": 1_800_003_600,
        "jti": "tok_" + "0" * 26,
        "scope": "bench:read",
    }
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()


def crypto_rates(algorithm: str, seconds: float) -> dict[str, Rate]:
    """Sign and verify rates of one key, as m2mauth's algorithms use them."""
    data = signing_input()
    if algorithm == "RS256":
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa_public = rsa_key.public_key()
        rsa_signature = rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return {
            "sign": measure(
                lambda: rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256()), seconds
            ),
            "verify": measure(
                lambda: rsa_public.verify(rsa_signature, data, padding.PKCS1v15(), hashes.SHA256()),
                seconds,
            ),
        }
    if algorithm == "ES256":
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_public = ec_key.public_key()
        ec_signature = ec_key.sign(data, ec.ECDSA(hashes.SHA256()))
        return {
            "sign": measure(lambda: ec_key.sign(data, ec.ECDSA(hashes.SHA256())), seconds),
            "verify": measure(
                lambda: ec_public.verify(ec_signature, data, ec.ECDSA(hashes.SHA256())), seconds
            ),
        }
    raise ValueError(f"no ceiling for {algorithm}")


def verify_kit_rate(issuer: str, jwks_url: str, token: str, seconds: float) -> Rate:
    """``TokenVerifier.verify`` of one valid token, keys fetched from the server's JWKS URL."""
    verifier = TokenVerifier(issuer=issuer, audience=issuer, jwks_url=jwks_url, allow_http=True)
    return measure(lambda: verifier.verify(token), seconds)
