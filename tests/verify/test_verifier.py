"""TokenVerifier accepts m2mauth's tokens and refuses every forgery and misuse RFC 8725 names."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from m2mauth.verify import (
    REQUIRED_CLAIMS,
    InsufficientScope,
    InvalidToken,
    JwksCache,
    StaticJwksSource,
    TokenError,
    TokenVerifier,
    WrongOrganization,
)
from tests.verify.support import (
    AUDIENCE,
    CLIENT_ID,
    ISSUER,
    ORG_ID,
    OTHER_ORG_ID,
    LocalIssuer,
    SigningKey,
    claims,
    hmac_token,
    make_key,
    mint,
    raw_token,
)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    return caught.value.description


# --- what m2mauth issues is accepted ------------------------------------------------


@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key", "ed_key"])
def test_accepts_tokens_signed_with_each_published_algorithm(
    key_name: str, request: pytest.FixtureRequest, verifier: TokenVerifier
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    exp = int(time.time()) + 300
    token = mint(key, exp=exp, jti="tok_1", scope="projects:read projects:write")

    verified = verifier.verify(token)

    assert verified.org_id == ORG_ID
    assert verified.client_id == CLIENT_ID
    assert verified.subject == CLIENT_ID
    assert verified.scopes == frozenset({"projects:read", "projects:write"})
    assert verified.jti == "tok_1"
    assert verified.expires_at == datetime.fromtimestamp(exp, tz=UTC)
    assert verified.claims["aud"] == AUDIENCE
    with pytest.raises(TypeError):
        verified.claims["org_id"] = OTHER_ORG_ID  # type: ignore[index]


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_is_compared_case_insensitively_with_or_without_media_prefix(
    typ: str, rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    # RFC 9068 section 4 and RFC 7515 section 4.1.9.
    assert verifier.verify(mint(rsa_key, headers={"typ": typ})).org_id == ORG_ID


def test_audience_may_be_one_of_several(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    token = mint(rsa_key, aud=["https://other.example.com", AUDIENCE])
    assert verifier.verify(token).org_id == ORG_ID


def test_token_without_scope_has_no_scopes(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    verified = verifier.verify(mint(rsa_key, scope=None))
    assert verified.scopes == frozenset()
    with pytest.raises(InsufficientScope):
        verified.require_scopes("projects:read")


def test_scopes_and_organization_helpers(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    verified = verifier.verify(mint(rsa_key, scope="a b"))
    assert verified.has_scopes("a")
    assert verified.has_scopes("a", "b")
    assert not verified.has_scopes("a", "c")
    verified.require_scopes("b")
    with pytest.raises(InsufficientScope) as caught:
        verified.require_scopes("a", "c")
    assert caught.value.required_scopes == frozenset({"a", "c"})
    verified.require_org(ORG_ID)
    with pytest.raises(WrongOrganization):
        verified.require_org(OTHER_ORG_ID)


# --- lifetime ---------------------------------------------------------------------------


def test_refuses_an_expired_token(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = mint(rsa_key, iat=now - 600, exp=now - 61)
    assert refused(verifier, token) == "the token has expired"


def test_expiry_within_the_leeway_is_tolerated(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    now = int(time.time())
    assert verifier.verify(mint(rsa_key, iat=now - 600, exp=now - 30)).org_id == ORG_ID


def test_refuses_iat_too_far_in_the_future(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = mint(rsa_key, iat=now + 600, exp=now + 900)
    assert refused(verifier, token) == "the token is not valid yet"


def test_refuses_a_token_before_its_nbf(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert refused(verifier, mint(rsa_key, nbf=now + 600)) == "the token is not valid yet"


@pytest.mark.parametrize("value", ["1700000000", True, None])
def test_refuses_numeric_dates_that_are_not_numbers(
    value: Any, rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    token = mint(rsa_key, iat=value) if value is not None else mint(rsa_key, iat=None)
    refused(verifier, token)


@pytest.mark.parametrize("leeway", [-1, 301, 3600])
def test_leeway_is_bounded(leeway: float, rsa_key: SigningKey) -> None:
    source = StaticJwksSource({"keys": [rsa_key.public_jwk]})
    with pytest.raises(ValueError, match="leeway"):
        TokenVerifier(ISSUER, AUDIENCE, jwks=source, leeway=leeway)


# --- signature and algorithm ------------------------------------------------------------


def test_refuses_a_forged_signature(
    rsa_key: SigningKey, attacker_key: SigningKey, verifier: TokenVerifier
) -> None:
    # Signed by the attacker's key but naming the issuer's kid.
    forged = mint(attacker_key, headers={"kid": rsa_key.kid})
    assert refused(verifier, forged) == "the token's signature is invalid"


def test_refuses_a_tampered_payload(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    header, _, signature = mint(rsa_key).split(".")
    payload = raw_token({}, claims(org_id=OTHER_ORG_ID)).split(".")[1]
    assert (
        refused(verifier, f"{header}.{payload}.{signature}") == "the token's signature is invalid"
    )


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_refuses_alg_none(alg: str, rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    token = raw_token({"alg": alg, "typ": "at+jwt", "kid": rsa_key.kid}, claims())
    assert refused(verifier, token) == "the token's signing algorithm is not accepted"
    # And with a signature segment that is not empty.
    token = raw_token({"alg": alg, "typ": "at+jwt", "kid": rsa_key.kid}, claims(), b"sig")
    assert refused(verifier, token) == "the token's signing algorithm is not accepted"


@pytest.mark.parametrize("secret_form", ["pem", "jwk_json", "modulus"])
def test_refuses_hs256_keyed_with_the_public_key(
    secret_form: str, rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    # CVE-2022-29217 class: the attacker knows the public key and "signs" with HMAC.
    secret = {
        "pem": rsa_key.public_pem(),
        "jwk_json": json.dumps(rsa_key.public_jwk).encode(),
        "modulus": rsa_key.public_jwk["n"].encode(),
    }[secret_form]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": rsa_key.kid}
    token = hmac_token(header, claims(), secret)
    assert refused(verifier, token) == "the token's signing algorithm is not accepted"


def test_hmac_and_none_can_never_be_configured(rsa_key: SigningKey) -> None:
    source = StaticJwksSource({"keys": [rsa_key.public_jwk]})
    for algorithms in (["HS256"], ["RS256", "HS512"], ["none"], ["RS256", "none"], ["hs384"]):
        with pytest.raises(ValueError, match="never accepted"):
            TokenVerifier(ISSUER, AUDIENCE, jwks=source, algorithms=algorithms)
    with pytest.raises(ValueError, match="at least one"):
        TokenVerifier(ISSUER, AUDIENCE, jwks=source, algorithms=[])
    with pytest.raises(ValueError, match="unsupported"):
        TokenVerifier(ISSUER, AUDIENCE, jwks=source, algorithms=["RS1"])


def test_refuses_an_algorithm_outside_the_configured_allowlist(
    ec_key: SigningKey, rsa_key: SigningKey
) -> None:
    source = StaticJwksSource({"keys": [rsa_key.public_jwk, ec_key.public_jwk]})
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks=source, algorithms=["RS256"])
    assert verifier.verify(mint(rsa_key)).org_id == ORG_ID
    assert refused(verifier, mint(ec_key)) == "the token's signing algorithm is not accepted"


def test_refuses_an_algorithm_that_does_not_fit_the_kid(
    rsa_key: SigningKey, ec_key: SigningKey, verifier: TokenVerifier
) -> None:
    # An ES256 token naming the RSA key's kid: the key exists but is of another type.
    token = mint(ec_key, headers={"kid": rsa_key.kid})
    assert refused(verifier, token) == "the token's algorithm does not match its signing key"
    ps256 = jwt.encode(
        claims(), rsa_key.private, algorithm="PS256", headers={"typ": "at+jwt", "kid": rsa_key.kid}
    )
    source = StaticJwksSource({"keys": [rsa_key.public_jwk]})
    lenient = TokenVerifier(ISSUER, AUDIENCE, jwks=source, algorithms=["RS256", "PS256"])
    # The published JWK says alg RS256, so a PS256 token under that kid is refused.
    assert refused(lenient, ps256) == "the token's algorithm does not match its signing key"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_refuses_rsa_keys_shorter_than_2048_bits() -> None:
    weak = make_key("RS256", "weak-1", rsa_bits=1024)
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks=StaticJwksSource({"keys": [weak.public_jwk]}))
    assert refused(verifier, mint(weak)) == "the token's signing key is not acceptable"


# --- header ----------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt2", "application/jwt", "", 7])
def test_refuses_a_wrong_typ(typ: Any, rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    token = mint(rsa_key, headers={"typ": typ})
    assert refused(verifier, token) == "the token is not a JWT access token (typ must be at+jwt)"


def test_refuses_a_missing_typ(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    # pyjwt drops a typ of None: a correctly signed token with no typ at all.
    headers = {"kid": rsa_key.kid, "typ": None}
    token = jwt.encode(claims(), rsa_key.private, algorithm="RS256", headers=headers)
    assert "typ" not in jwt.get_unverified_header(token)
    assert refused(verifier, token) == "the token is not a JWT access token (typ must be at+jwt)"


@pytest.mark.parametrize("kid", [None, "", 42, "k" * 257])
def test_refuses_a_missing_or_unusable_kid(
    kid: Any, rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    header = {"alg": "RS256", "typ": "at+jwt"} | ({} if kid is None else {"kid": kid})
    token = raw_token(header, claims(), b"x")
    assert refused(verifier, token) == "the token has no usable key id (kid)"


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["urn:example:ext"], [], "b64"])
def test_refuses_any_crit_header(crit: Any, rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    # RFC 7515 section 4.1.11: we understand no extension, so any crit is refused.
    token = mint(rsa_key, headers={"crit": crit, "exp": 1})
    assert refused(verifier, token) == (
        "the token uses a critical header extension we do not support"
    )


def test_ignores_jku_and_x5u_and_never_fetches_them(
    attacker_key: SigningKey, issuer: LocalIssuer, issuer_url: str, verifier: TokenVerifier
) -> None:
    # The attacker points jku/x5u at a JWK Set of their own (served here, to count fetches).
    attacker_jwks = json.dumps({"keys": [attacker_key.public_jwk]}).encode()
    issuer.extra_routes["/attacker-jwks"] = lambda: (200, {}, attacker_jwks)
    for header in ({"jku": f"{issuer_url}/attacker-jwks"}, {"x5u": f"{issuer_url}/attacker-jwks"}):
        token = mint(attacker_key, headers=header)
        assert refused(verifier, token) == "the token's key id is not published by the issuer"
    assert issuer.count("/attacker-jwks") == 0


def test_ignores_an_embedded_jwk(
    rsa_key: SigningKey, attacker_key: SigningKey, verifier: TokenVerifier
) -> None:
    embedded = {"jwk": attacker_key.public_jwk}
    # With the attacker's own kid: not a published key.
    token = mint(attacker_key, headers=embedded)
    assert refused(verifier, token) == "the token's key id is not published by the issuer"
    # With the issuer's kid: verified against the issuer's key, so the signature fails.
    token = mint(attacker_key, headers={**embedded, "kid": rsa_key.kid})
    assert refused(verifier, token) == "the token's signature is invalid"


def test_refuses_an_unknown_kid(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    token = mint(rsa_key, headers={"kid": "never-published"})
    assert refused(verifier, token) == "the token's key id is not published by the issuer"


# --- size and shape ---------------------------------------------------------------------


def test_refuses_a_10_mb_token_fast_and_without_fetching_keys(
    rsa_key: SigningKey, issuer: LocalIssuer, verifier: TokenVerifier
) -> None:
    huge = mint(rsa_key, padding="A" * (10 * 1024 * 1024))
    started = time.perf_counter()
    assert refused(verifier, huge) == "the token is too large"
    assert time.perf_counter() - started < 0.05
    assert issuer.count("/jwks") == 0


def test_token_just_under_the_limit_is_verified(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    token = mint(rsa_key, padding="A" * 5000)
    assert len(token) < verifier.max_token_bytes
    assert verifier.verify(token).org_id == ORG_ID


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d.e",
        "é.é.é",
        "!!!.e30.",
        raw_token({"alg": "RS256"}, {}).replace(".", "=.", 1),
        "W10.e30.",  # header is a JSON array
        "bm90IGpzb24.e30.",  # header is not JSON
    ],
)
def test_refuses_malformed_tokens(token: str, verifier: TokenVerifier) -> None:
    assert refused(verifier, token) == "the token is malformed"


def test_refuses_a_non_string(verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(b"a.b.c")  # type: ignore[arg-type]


def test_refuses_a_payload_that_is_not_an_object(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    token = jwt.api_jws.encode(
        b"[1, 2]", rsa_key.private, algorithm="RS256", headers={"typ": "at+jwt", "kid": "rsa-1"}
    )
    assert refused(verifier, token) == "the token is malformed"


# --- claims -----------------------------------------------------------------------------


def test_refuses_an_issuer_that_is_only_a_prefix(
    rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    for iss in (ISSUER[:-1], ISSUER + "/", ISSUER + ".evil.example", ISSUER.upper()):
        assert refused(verifier, mint(rsa_key, iss=iss)) == "the token is from another issuer"


def test_refuses_another_audience(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    for aud in ("https://other.example.com", [AUDIENCE + "x"], AUDIENCE[:-1]):
        token = mint(rsa_key, aud=aud)
        assert refused(verifier, token) == "the token is not meant for this audience"


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_refuses_a_token_missing_a_required_claim(
    claim: str, rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    assert refused(verifier, mint(rsa_key, **{claim: None})) == (
        f"the token lacks the {claim} claim"
    )


def test_refuses_a_token_without_org_id(rsa_key: SigningKey, verifier: TokenVerifier) -> None:
    assert refused(verifier, mint(rsa_key, org_id=None)) == "the token lacks the org_id claim"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("org_id", ""),
        ("org_id", 7),
        ("org_id", ["org_a"]),
        ("client_id", ""),
        ("sub", 12),
        ("jti", 5),
        ("scope", ["projects:read"]),
    ],
)
def test_refuses_ill_typed_claims(
    claim: str, value: Any, rsa_key: SigningKey, verifier: TokenVerifier
) -> None:
    refused(verifier, mint(rsa_key, **{claim: value}))


# --- messages ---------------------------------------------------------------------------


def test_error_messages_are_fixed_and_safe_to_return(
    rsa_key: SigningKey, attacker_key: SigningKey, verifier: TokenVerifier
) -> None:
    bad_tokens = [
        mint(attacker_key, headers={"kid": rsa_key.kid}),
        mint(rsa_key, iss="https://evil.example"),
        hmac_token({"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"}, claims(), b"k"),
        mint(rsa_key, headers={"kid": "x" * 200}),
        "bm90IGpzb24.e30.",
    ]
    for token in bad_tokens:
        with pytest.raises(TokenError) as caught:
            verifier.verify(token)
        message = str(caught.value)
        assert message == caught.value.description
        assert message.isascii()
        assert message.isprintable()
        assert '"' not in message
        assert "\\" not in message
        assert rsa_key.public_jwk["n"][:16] not in message
        assert "x" * 20 not in message  # never echoes the caller's input


def test_verifier_needs_exactly_one_key_source(rsa_key: SigningKey) -> None:
    source = StaticJwksSource({"keys": [rsa_key.public_jwk]})
    with pytest.raises(ValueError, match="exactly one"):
        TokenVerifier(ISSUER, AUDIENCE)
    with pytest.raises(ValueError, match="exactly one"):
        TokenVerifier(ISSUER, AUDIENCE, jwks=source, jwks_url="https://auth.example.com/jwks")
    with pytest.raises(ValueError, match="every algorithm"):
        TokenVerifier(
            ISSUER, AUDIENCE, jwks=JwksCache(source, algorithms=["RS256"]), algorithms=["ES256"]
        )
    with pytest.raises(ValueError, match="plain http"):
        TokenVerifier(ISSUER, AUDIENCE, jwks_url="http://auth.example.com/oauth2/jwks")
    # Loopback over http is fine (development), and so is https anywhere.
    TokenVerifier(ISSUER, AUDIENCE, jwks_url="http://127.0.0.1:9/jwks")
    TokenVerifier(ISSUER, AUDIENCE, jwks_url="https://auth.example.com/oauth2/jwks")
    with pytest.raises(ValueError, match="http"):
        TokenVerifier(ISSUER, AUDIENCE, jwks_url="file:///etc/passwd")
