"""The JWKS cache against a real local HTTP server: Cache-Control, rotation, outages, load."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from m2mauth.verify import (
    HttpJwksSource,
    InvalidToken,
    JwksCache,
    JwksUnavailable,
    StaticJwksSource,
    TokenVerifier,
)
from m2mauth.verify.jwks import JwksFetchError, parse_max_age
from tests.verify.support import (
    AUDIENCE,
    ISSUER,
    ORG_ID,
    FakeClock,
    LocalIssuer,
    SigningKey,
    make_key,
    mint,
)


def verifier_for(url: str, clock: FakeClock, **cache_options: Any) -> TokenVerifier:
    cache = JwksCache(HttpJwksSource(f"{url}/jwks"), clock=clock, **cache_options)
    return TokenVerifier(ISSUER, AUDIENCE, jwks=cache)


def test_keys_are_fetched_once_for_many_tokens(
    rsa_key: SigningKey,
    ec_key: SigningKey,
    ed_key: SigningKey,
    issuer: LocalIssuer,
    verifier: TokenVerifier,
) -> None:
    for _ in range(20):
        for key in (rsa_key, ec_key, ed_key):
            assert verifier.verify(mint(key)).org_id == ORG_ID
    assert issuer.count("/jwks") == 1


def test_cache_control_max_age_is_honoured(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.cache_control = "public, max-age=120"
    verifier = verifier_for(issuer_url, clock)
    verifier.verify(mint(rsa_key))
    clock.advance(119)
    verifier.verify(mint(rsa_key))
    assert issuer.count("/jwks") == 1
    clock.advance(2)
    verifier.verify(mint(rsa_key))
    assert issuer.count("/jwks") == 2


def test_default_lifespan_without_cache_control(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.cache_control = None
    verifier = verifier_for(issuer_url, clock, default_lifespan=300)
    verifier.verify(mint(rsa_key))
    clock.advance(299)
    verifier.verify(mint(rsa_key))
    assert issuer.count("/jwks") == 1
    clock.advance(2)
    verifier.verify(mint(rsa_key))
    assert issuer.count("/jwks") == 2


@pytest.mark.parametrize("cache_control", ["no-store", "no-cache", "max-age=0", "max-age=1"])
def test_a_tiny_max_age_is_clamped_so_the_issuer_is_not_hammered(
    cache_control: str,
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    clock: FakeClock,
) -> None:
    issuer.cache_control = cache_control
    verifier = verifier_for(issuer_url, clock, min_lifespan=30)
    for _ in range(10):
        verifier.verify(mint(rsa_key))
        clock.advance(2)
    assert issuer.count("/jwks") == 1


def test_a_huge_max_age_is_clamped(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.cache_control = "max-age=31536000"
    verifier = verifier_for(issuer_url, clock, max_lifespan=3600)
    verifier.verify(mint(rsa_key))
    clock.advance(3601)
    verifier.verify(mint(rsa_key))
    assert issuer.count("/jwks") == 2


def test_unknown_kids_refetch_at_most_once_per_interval(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    verifier = verifier_for(issuer_url, clock, unknown_kid_interval=30)
    verifier.verify(mint(rsa_key))
    assert issuer.count("/jwks") == 1
    for n in range(50):
        with pytest.raises(InvalidToken, match="key id is not published"):
            verifier.verify(mint(rsa_key, headers={"kid": f"garbage-{n}"}))
        clock.advance(0.5)  # 25 s in all
    assert issuer.count("/jwks") == 2  # the first garbage kid forced one refresh, no more
    clock.advance(6)
    with pytest.raises(InvalidToken):
        verifier.verify(mint(rsa_key, headers={"kid": "garbage-late"}))
    assert issuer.count("/jwks") == 3


def test_garbage_kids_from_many_threads_cause_one_refresh(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    verifier = verifier_for(issuer_url, clock)
    verifier.verify(mint(rsa_key))
    tokens = [mint(rsa_key, headers={"kid": f"garbage-{n}"}) for n in range(64)]

    def attempt(token: str) -> str:
        try:
            verifier.verify(token)
        except InvalidToken as err:
            return err.description
        return "accepted"

    with ThreadPoolExecutor(16) as pool:
        outcomes = set(pool.map(attempt, tokens))
    assert outcomes == {"the token's key id is not published by the issuer"}
    assert issuer.count("/jwks") == 2


def test_a_rotated_in_key_is_picked_up_without_restart(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    verifier = verifier_for(issuer_url, clock)
    assert verifier.verify(mint(rsa_key)).org_id == ORG_ID
    new_key = make_key("ES256", "ec-rotated")
    # The issuer publishes the new key (and later signs with it) while we run.
    issuer.publish(rsa_key, new_key)
    assert verifier.verify(mint(new_key)).org_id == ORG_ID
    assert issuer.count("/jwks") == 2
    # The old key, still published, keeps working; nothing more is fetched.
    assert verifier.verify(mint(rsa_key)).org_id == ORG_ID
    assert issuer.count("/jwks") == 2


def test_a_retired_key_stops_verifying_after_the_next_refresh(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.cache_control = "max-age=60"
    verifier = verifier_for(issuer_url, clock)
    verifier.verify(mint(rsa_key))
    new_key = make_key("RS256", "rsa-2")
    issuer.publish(new_key)
    clock.advance(61)
    # Stale: this call refreshes first, and the retired kid is no longer published.
    with pytest.raises(InvalidToken, match="key id is not published"):
        verifier.verify(mint(rsa_key))
    assert verifier.verify(mint(new_key)).org_id == ORG_ID


def test_a_key_published_ahead_is_picked_up_when_the_cache_goes_stale(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.cache_control = "max-age=60"
    verifier = verifier_for(issuer_url, clock)
    verifier.verify(mint(rsa_key))
    next_key = make_key("RS256", "rsa-next")
    issuer.publish(rsa_key, next_key)
    clock.advance(61)
    verifier.verify(mint(rsa_key))  # stale: refreshed on this call
    assert issuer.count("/jwks") == 2
    assert verifier.jwks.cached_key("rsa-next", "RS256") is not None
    verifier.verify(mint(next_key))
    assert issuer.count("/jwks") == 2


@pytest.mark.parametrize("failure", ["status", "garbage", "no_usable_keys", "down"])
def test_a_failed_refresh_keeps_the_cached_keys(
    failure: str,
    rsa_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    clock: FakeClock,
) -> None:
    issuer.cache_control = "max-age=60"
    verifier = verifier_for(issuer_url, clock, retry_interval=5)
    verifier.verify(mint(rsa_key))
    if failure == "status":
        issuer.jwks_status = 503
    elif failure == "garbage":
        issuer.jwks_body = b"<html>maintenance</html>"
    elif failure == "no_usable_keys":
        issuer.jwks_body = json.dumps(
            {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}
        ).encode()
    else:
        # The issuer is gone: point the source at a port nobody listens on.
        verifier.jwks._source = HttpJwksSource("http://127.0.0.1:9/jwks", timeout=1)
    clock.advance(61)
    assert verifier.verify(mint(rsa_key)).org_id == ORG_ID
    attempts = issuer.count("/jwks")
    # The failed refresh is retried after retry_interval, not on every call.
    clock.advance(1)
    verifier.verify(mint(rsa_key))
    assert issuer.count("/jwks") == attempts
    clock.advance(5)
    assert verifier.verify(mint(rsa_key)).org_id == ORG_ID
    if failure != "down":
        assert issuer.count("/jwks") == attempts + 1


def test_no_keys_at_all_is_unavailable_not_invalid(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.jwks_status = 500
    verifier = verifier_for(issuer_url, clock, retry_interval=5)
    for _ in range(10):
        with pytest.raises(JwksUnavailable):
            verifier.verify(mint(rsa_key))
    assert issuer.count("/jwks") == 1  # retries wait for retry_interval
    issuer.jwks_status = 200
    clock.advance(5)
    assert verifier.verify(mint(rsa_key)).org_id == ORG_ID
    assert issuer.count("/jwks") == 2


def test_an_unknown_kid_during_an_outage_is_unavailable(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    verifier = verifier_for(issuer_url, clock)
    verifier.verify(mint(rsa_key))
    issuer.jwks_status = 503
    # We could not ask the issuer whether it rotated: not the caller's fault.
    with pytest.raises(JwksUnavailable):
        verifier.verify(mint(make_key("RS256", "rsa-new")))
    # Within the rate limit we do not ask again, and the kid is simply unknown.
    with pytest.raises(InvalidToken):
        verifier.verify(mint(rsa_key, headers={"kid": "rsa-new"}))
    assert issuer.count("/jwks") == 2


def test_unusable_members_of_the_jwk_set_are_skipped(rsa_key: SigningKey) -> None:
    private_jwk = {"kty": "RSA", "kid": "with-d", "n": "x", "e": "AQAB", "d": "secret"}
    jwks = {
        "keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
            {**rsa_key.public_jwk, "kid": "enc", "use": "enc"},
            {**rsa_key.public_jwk, "kid": None},
            {**rsa_key.public_jwk, "kid": "wrong-alg", "alg": "ES256"},
            {**rsa_key.public_jwk, "kid": "bad-n", "n": "!!"},
            private_jwk,
            "not an object",
            rsa_key.public_jwk,
        ]
    }
    cache = JwksCache(StaticJwksSource(jwks))
    assert cache.get_key("rsa-1", "RS256") is not None
    # A JWK whose alg does not fit its kty is unusable, hence as good as unpublished.
    for kid in ("hmac", "enc", "with-d", "bad-n", "wrong-alg"):
        with pytest.raises(InvalidToken, match="not published"):
            cache.get_key(kid, "RS256")
    with pytest.raises(InvalidToken, match="not published"):
        cache.get_key("hmac", "HS256")


def test_a_jwk_without_alg_serves_every_allowed_algorithm_its_type_fits(
    rsa_key: SigningKey,
) -> None:
    jwk = {k: v for k, v in rsa_key.public_jwk.items() if k != "alg"}
    cache = JwksCache(StaticJwksSource({"keys": [jwk]}), algorithms=["RS256", "PS256", "ES256"])
    assert cache.get_key("rsa-1", "RS256").algorithm_name == "RS256"
    assert cache.get_key("rsa-1", "PS256").algorithm_name == "PS256"
    with pytest.raises(InvalidToken, match="does not match"):
        cache.get_key("rsa-1", "ES256")


def test_an_oversized_jwks_response_is_a_failed_fetch(issuer: LocalIssuer, issuer_url: str) -> None:
    issuer.jwks_body = b'{"keys": [' + b" " * (600 * 1024) + b"]}"
    with pytest.raises(JwksFetchError, match="too large"):
        HttpJwksSource(f"{issuer_url}/jwks").fetch()


def test_redirects_are_not_followed(issuer: LocalIssuer, issuer_url: str) -> None:
    issuer.extra_routes["/moved"] = lambda: (302, {"Location": f"{issuer_url}/jwks"}, b"")
    with pytest.raises(JwksFetchError, match="HTTP 302"):
        HttpJwksSource(f"{issuer_url}/moved").fetch()
    assert issuer.count("/jwks") == 0


def test_cache_refuses_hmac_configuration(rsa_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        JwksCache(StaticJwksSource({"keys": [rsa_key.public_jwk]}), algorithms=["HS256"])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, None),
        ([], None),
        (["public, max-age=900"], 900.0),
        (["max-age=60, must-revalidate"], 60.0),
        (['max-age="120"'], 120.0),
        (["Max-Age=5"], 5.0),
        (["max-age=-5"], None),
        (["max-age=soon"], None),
        (["public", "max-age=30"], 30.0),
        (["no-store"], 0.0),
        (["max-age=600, no-cache"], 0.0),
    ],
)
def test_parse_max_age(values: list[str] | None, expected: float | None) -> None:
    assert parse_max_age(values) == expected


# --- concurrency ---------------------------------------------------------------------


def test_many_threads_verify_concurrently_with_one_fetch(
    rsa_key: SigningKey,
    ec_key: SigningKey,
    ed_key: SigningKey,
    issuer: LocalIssuer,
    issuer_url: str,
    clock: FakeClock,
) -> None:
    issuer.jwks_delay = 0.2  # every thread arrives while the first fetch is in flight
    verifier = verifier_for(issuer_url, clock)
    tokens = [mint(key) for key in (rsa_key, ec_key, ed_key) for _ in range(10)]
    barrier = threading.Barrier(12)

    def work(n: int) -> int:
        barrier.wait()
        ok = 0
        for token in tokens[n % 3 :: 3]:
            ok += verifier.verify(token).org_id == ORG_ID
        return ok

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(work, range(12)))
    assert results == [10] * 12
    assert issuer.count("/jwks") == 1


def test_stale_refresh_does_not_stall_other_threads(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.cache_control = "max-age=60"
    verifier = verifier_for(issuer_url, clock)
    token = mint(rsa_key)
    verifier.verify(token)
    issuer.jwks_delay = 1.0
    clock.advance(61)
    refresher = threading.Thread(target=verifier.verify, args=(token,))
    refresher.start()
    while issuer.count("/jwks") < 2:
        time.sleep(0.01)
    # The refresh is in flight; this thread verifies from the cache without waiting.
    started = time.perf_counter()
    assert verifier.verify(token).org_id == ORG_ID
    assert time.perf_counter() - started < 0.5
    refresher.join()


def test_an_unknown_kid_waiting_behind_a_refresh_does_not_fetch_again(
    rsa_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.cache_control = "max-age=60"
    verifier = verifier_for(issuer_url, clock)
    verifier.verify(mint(rsa_key))
    new_key = make_key("RS256", "rsa-new")
    issuer.publish(rsa_key, new_key)
    issuer.jwks_delay = 0.5
    clock.advance(61)
    refresher = threading.Thread(target=verifier.verify, args=(mint(rsa_key),))
    refresher.start()
    while issuer.count("/jwks") < 2:
        time.sleep(0.01)
    # The stale refresh is in flight and will bring rsa-new: this call waits for it
    # instead of forcing a fetch of its own.
    assert verifier.verify(mint(new_key)).org_id == ORG_ID
    refresher.join()
    assert issuer.count("/jwks") == 2


def test_async_verification_fetches_off_the_event_loop(
    rsa_key: SigningKey, ec_key: SigningKey, issuer: LocalIssuer, issuer_url: str, clock: FakeClock
) -> None:
    issuer.jwks_delay = 0.5
    verifier = verifier_for(issuer_url, clock)
    tokens = [mint(rsa_key) for _ in range(20)] + [mint(ec_key) for _ in range(20)]

    async def main() -> tuple[list[str], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.02)

        ticking = asyncio.create_task(ticker())
        results = await asyncio.gather(*(verifier.averify(t) for t in tokens))
        done.set()
        await ticking
        return [r.org_id for r in results], ticks

    org_ids, ticks = asyncio.run(main())
    assert org_ids == [ORG_ID] * 40
    assert ticks >= 10  # the loop kept running during the 0.5 s fetch
    assert issuer.count("/jwks") == 1


def test_async_refusals_match_sync_ones(
    rsa_key: SigningKey, attacker_key: SigningKey, verifier: TokenVerifier
) -> None:
    async def check(token: str) -> str:
        try:
            await verifier.averify(token)
        except InvalidToken as err:
            return err.description
        return "accepted"

    assert asyncio.run(check(mint(rsa_key))) == "accepted"
    forged = mint(attacker_key, headers={"kid": rsa_key.kid})
    assert asyncio.run(check(forged)) == "the token's signature is invalid"
    assert asyncio.run(check(mint(rsa_key, headers={"kid": "nope"}))) == (
        "the token's key id is not published by the issuer"
    )
    assert asyncio.run(check("x" * 10_000)) == "the token is too large"


def test_prefetch_warms_the_cache(issuer: LocalIssuer, jwks_cache: JwksCache) -> None:
    assert jwks_cache.prefetch()
    assert jwks_cache.prefetch()
    assert issuer.count("/jwks") == 1
    assert jwks_cache.cached_key("rsa-1", "RS256") is not None
