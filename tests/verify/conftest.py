"""Keys, a local issuer over real HTTP, a fake clock and a verifier wired to them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from m2mauth.verify import HttpJwksSource, JwksCache, TokenVerifier
from tests.verify.support import AUDIENCE, ISSUER, FakeClock, LocalIssuer, SigningKey, make_key


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return make_key("RS256", "rsa-1")


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return make_key("ES256", "ec-1")


@pytest.fixture(scope="session")
def ed_key() -> SigningKey:
    return make_key("EdDSA", "ed-1")


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    return make_key("RS256", "attacker-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(rsa_key: SigningKey, ec_key: SigningKey, ed_key: SigningKey) -> LocalIssuer:
    local = LocalIssuer()
    local.publish(rsa_key, ec_key, ed_key)
    return local


@pytest.fixture
def issuer_url(issuer: LocalIssuer) -> Iterator[str]:
    with issuer.running() as url:
        yield url


@pytest.fixture
def jwks_cache(issuer_url: str, clock: FakeClock) -> JwksCache:
    return JwksCache(HttpJwksSource(f"{issuer_url}/jwks", timeout=5.0), clock=clock)


@pytest.fixture
def verifier(jwks_cache: JwksCache) -> TokenVerifier:
    return TokenVerifier(ISSUER, AUDIENCE, jwks=jwks_cache)
