"""verify_and_introspect: RFC 7662 over real HTTP, with a short, bounded cache of answers."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from m2mauth.verify import (
    IntrospectionClient,
    IntrospectionUnavailable,
    InvalidToken,
    JwksCache,
    TokenVerifier,
)
from tests.verify.support import (
    AUDIENCE,
    CLIENT_ID,
    ISSUER,
    ORG_ID,
    FakeClock,
    LocalIssuer,
    SigningKey,
    mint,
)


def active(token_claims: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"active": True, "org_id": ORG_ID, "client_id": CLIENT_ID, **(token_claims or {})}


def introspecting_verifier(
    jwks_cache: JwksCache, issuer_url: str, clock: FakeClock, **options: Any
) -> TokenVerifier:
    options.setdefault("client_id", "api_client")
    options.setdefault("client_secret", "s3cret/with+odd&chars")
    client = IntrospectionClient(f"{issuer_url}/introspect", clock=clock, **options)
    return TokenVerifier(ISSUER, AUDIENCE, jwks=jwks_cache, introspection=client)


def test_active_token_is_accepted_and_the_answer_cached(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock, cache_ttl=30)
    token = mint(rsa_key)
    issuer.introspection[token] = active()
    assert verifier.verify_and_introspect(token).org_id == ORG_ID
    assert verifier.verify_and_introspect(token).org_id == ORG_ID
    assert issuer.count("/introspect") == 1
    clock.advance(31)
    verifier.verify_and_introspect(token)
    assert issuer.count("/introspect") == 2


def test_revoked_token_is_refused_and_never_cached(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock)
    token = mint(rsa_key)
    # Unknown to the issuer's introspection: {"active": false} (RFC 7662 section 2.2).
    for _ in range(2):
        with pytest.raises(InvalidToken, match="not active"):
            verifier.verify_and_introspect(token)
    assert issuer.count("/introspect") == 2
    # The same token still passes offline verification: only introspection sees revocation.
    assert verifier.verify(token).org_id == ORG_ID


def test_revocation_is_seen_once_the_cached_answer_expires(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock, cache_ttl=10)
    token = mint(rsa_key)
    issuer.introspection[token] = active()
    verifier.verify_and_introspect(token)
    del issuer.introspection[token]  # revoked
    verifier.verify_and_introspect(token)  # still cached
    clock.advance(11)
    with pytest.raises(InvalidToken, match="not active"):
        verifier.verify_and_introspect(token)


@pytest.mark.parametrize("answer", [{"active": "true"}, {"active": 1}, {}, {"active": None}])
def test_only_active_true_counts(
    answer: dict[str, Any],
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock)
    token = mint(rsa_key)
    issuer.introspection[token] = answer
    with pytest.raises(InvalidToken, match="not active"):
        verifier.verify_and_introspect(token)


@pytest.mark.parametrize("claim", ["jti", "client_id", "org_id", "iss"])
def test_an_answer_about_another_token_is_refused(
    claim: str,
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock)
    token = mint(rsa_key)
    issuer.introspection[token] = active({claim: "something-else"})
    with pytest.raises(InvalidToken, match="not active"):
        verifier.verify_and_introspect(token)


@pytest.mark.parametrize("status", [500, 503, 401, 404])
def test_a_failing_endpoint_is_unavailable_not_inactive(
    status: int,
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock)
    issuer.introspection_status = status
    with pytest.raises(IntrospectionUnavailable):
        verifier.verify_and_introspect(mint(rsa_key))


def test_an_unreachable_endpoint_is_unavailable(
    rsa_key: SigningKey, jwks_cache: JwksCache, clock: FakeClock
) -> None:
    verifier = introspecting_verifier(jwks_cache, "http://127.0.0.1:9", clock, timeout=1)
    with pytest.raises(IntrospectionUnavailable):
        verifier.verify_and_introspect(mint(rsa_key))


def test_a_forged_token_never_reaches_the_endpoint(
    rsa_key: SigningKey,
    attacker_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock)
    with pytest.raises(InvalidToken, match="signature"):
        verifier.verify_and_introspect(mint(attacker_key, headers={"kid": rsa_key.kid}))
    assert issuer.count("/introspect") == 0


def test_client_credentials_go_in_basic_auth_form_urlencoded(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock)
    token = mint(rsa_key)
    issuer.introspection[token] = active()
    verifier.verify_and_introspect(token)
    headers, form = issuer.introspection_requests[0]
    assert form == {"token": token, "token_type_hint": "access_token"}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    scheme, _, encoded = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    # RFC 6749 section 2.3.1: each part form-urlencoded, then base64.
    assert base64.b64decode(encoded).decode() == "api_client:s3cret%2Fwith%2Bodd%26chars"


def test_client_credentials_in_the_form_body(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock, client_auth="post")
    token = mint(rsa_key)
    issuer.introspection[token] = active()
    verifier.verify_and_introspect(token)
    headers, form = issuer.introspection_requests[0]
    assert "Authorization" not in headers
    assert form["client_id"] == "api_client"
    assert form["client_secret"] == "s3cret/with+odd&chars"


def test_an_admin_key_as_bearer(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    client = IntrospectionClient(f"{issuer_url}/introspect", bearer_token="adm_key", clock=clock)
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks=jwks_cache, introspection=client)
    token = mint(rsa_key)
    issuer.introspection[token] = active()
    verifier.verify_and_introspect(token)
    headers, form = issuer.introspection_requests[0]
    assert headers["Authorization"] == "Bearer adm_key"
    assert "client_secret" not in form


def test_the_cache_is_bounded(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock, cache_size=3)
    tokens = [mint(rsa_key) for _ in range(5)]
    for token in tokens:
        issuer.introspection[token] = active()
        verifier.verify_and_introspect(token)
    assert verifier.introspection is not None
    assert verifier.introspection.cache_len() == 3
    verifier.verify_and_introspect(tokens[0])  # evicted, so asked again
    assert issuer.count("/introspect") == 6
    verifier.verify_and_introspect(tokens[4])  # still cached
    assert issuer.count("/introspect") == 6


def test_an_answer_is_never_cached_past_the_token_expiry(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock, cache_ttl=300)
    token = mint(rsa_key, exp=int(time.time()) + 20)
    issuer.introspection[token] = active()
    verifier.verify_and_introspect(token)
    clock.advance(21)
    verifier.verify_and_introspect(token)  # leeway keeps it valid; the cache entry is gone
    assert issuer.count("/introspect") == 2


def test_configuration_is_checked(issuer_url: str) -> None:
    url = f"{issuer_url}/introspect"
    with pytest.raises(ValueError, match="either"):
        IntrospectionClient(url)
    with pytest.raises(ValueError, match="either"):
        IntrospectionClient(url, client_id="a", client_secret="b", bearer_token="c")
    with pytest.raises(ValueError, match="cache_ttl"):
        IntrospectionClient(url, bearer_token="c", cache_ttl=3600)
    with pytest.raises(ValueError, match="plain http"):
        IntrospectionClient("http://auth.example.com/introspect", bearer_token="c")


def test_without_a_client_verify_and_introspect_is_a_programming_error(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    with pytest.raises(RuntimeError, match="IntrospectionClient"):
        verifier.verify_and_introspect(mint(rsa_key))


def test_async_introspection(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock)
    good, revoked = mint(rsa_key), mint(rsa_key)
    issuer.introspection[good] = active()

    async def main() -> tuple[str, str]:
        first = await verifier.averify_and_introspect(good)
        await verifier.averify_and_introspect(good)
        try:
            await verifier.averify_and_introspect(revoked)
        except InvalidToken as err:
            return first.org_id, err.description
        return first.org_id, "accepted"

    assert asyncio.run(main()) == (ORG_ID, "the token is not active")
    assert issuer.count("/introspect") == 2


def test_async_introspection_does_not_block_the_event_loop(
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    jwks_cache: JwksCache,
    clock: FakeClock,
) -> None:
    verifier = introspecting_verifier(jwks_cache, issuer_url, clock)
    jwks_cache.prefetch()
    token = mint(rsa_key)
    issuer.introspection[token] = active()
    issuer.introspection_delay = 0.4

    async def main() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.02)

        ticking = asyncio.create_task(ticker())
        await verifier.averify_and_introspect(token)
        done.set()
        await ticking
        return ticks

    assert asyncio.run(main()) >= 8
