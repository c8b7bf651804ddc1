"""Signing keys: generation, encryption at rest, JWKS, lifecycle and rotation."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from m2mauth.core import jws, signing_keys
from m2mauth.core.blocking import WouldBlock, non_blocking
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.models import AuditFilter, SigningKey, SigningKeyState
from m2mauth.core.signing_keys import (
    ALGORITHMS,
    SigningKeyError,
    SigningKeyRing,
    decrypt_private_key,
    new_signing_key,
)
from tests.delegating_store import DelegatingStore
from tests.unit.conftest import FakeClock, TokenWorld

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def stored_keys(store: Store) -> list[SigningKey]:
    with store.unit_of_work() as uow:
        return uow.list_signing_keys()


def by_state(store: Store) -> dict[SigningKeyState, list[str]]:
    out: dict[SigningKeyState, list[str]] = {s: [] for s in SigningKeyState}
    for key in stored_keys(store):
        out[key.state].append(key.id)
    return out


def audit_actions(store: Store) -> list[str]:
    with store.unit_of_work() as uow:
        return [e.action for e in uow.list_audit_events(AuditFilter(), before_id=None, limit=1000)]


def ring_for(world: TokenWorld, store: Store | None = None, **kwargs: Any) -> SigningKeyRing:
    s = world.settings
    options: dict[str, Any] = {
        "algorithm": s.signing_algorithm,
        "max_token_ttl_seconds": s.max_token_ttl_seconds,
        "clock_leeway_seconds": s.clock_leeway_seconds,
        "rotation_interval_seconds": s.key_rotation_interval_seconds,
        "jwks_max_age_seconds": s.jwks_max_age_seconds,
        "refresh_interval_seconds": 30.0,
        **kwargs,
    }
    return SigningKeyRing(store or world.store, world.keys.key_encryption, world.clock, **options)


def sign(ring: SigningKeyRing, claims: dict[str, Any] | None = None) -> str:
    kid, alg, key = ring.current_signer()
    return jwt.encode(claims or {"x": 1}, key, algorithm=alg, headers={"kid": kid})


def verifies(ring: SigningKeyRing, token: str) -> bool:
    kid = jwt.get_unverified_header(token)["kid"]
    vk = ring.verification_key(kid)
    if vk is None:
        return False
    jwt.decode(token, vk.key, algorithms=[vk.algorithm])
    return True


# --- key material --------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_private_key_is_encrypted_bound_to_its_kid_and_root_key(algorithm: str) -> None:
    kek = secrets.token_bytes(32)
    record = new_signing_key(kek, algorithm, SigningKeyState.NEXT, FakeClock()())
    blob = record.encrypted_private_key
    # Not PKCS#8 plaintext: neither parseable as DER nor containing it.
    with pytest.raises(ValueError, match=r".+"):
        serialization.load_der_private_key(blob, password=None)
    key = decrypt_private_key(kek, record.id, blob)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert der not in blob
    assert len(blob) == 12 + len(der) + 16  # nonce || ciphertext || GCM tag
    # The public JWK in the record is the public half of this private key.
    jwk = json.loads(record.public_jwk)
    assert jwk == signing_keys.public_jwk(record.id, algorithm, key.public_key())
    # Another root key, or the same ciphertext moved to another key id, fails.
    with pytest.raises(SigningKeyError, match="root key"):
        decrypt_private_key(secrets.token_bytes(32), record.id, blob)
    other_kid = new_signing_key(kek, algorithm, SigningKeyState.NEXT, FakeClock()()).id
    with pytest.raises(SigningKeyError):
        decrypt_private_key(kek, other_kid, blob)
    with pytest.raises(SigningKeyError):
        decrypt_private_key(kek, record.id, blob[:-1] + bytes([blob[-1] ^ 1]))


@pytest.mark.parametrize(
    ("algorithm", "key_type", "members"),
    [
        ("RS256", rsa.RSAPrivateKey, {"kty", "kid", "alg", "use", "n", "e"}),
        ("ES256", ec.EllipticCurvePrivateKey, {"kty", "kid", "alg", "use", "crv", "x", "y"}),
        ("EdDSA", ed25519.Ed25519PrivateKey, {"kty", "kid", "alg", "use", "crv", "x"}),
    ],
)
@pytest.mark.real_key_generation
def test_generated_keys_and_their_public_jwks(
    algorithm: str, key_type: type, members: set[str]
) -> None:
    key = signing_keys.generate_private_key(algorithm)
    assert isinstance(key, key_type)
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == 2048
        assert key.public_key().public_numbers().e == 65537
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert key.curve.name == "secp256r1"
    jwk = signing_keys.public_jwk("key_x", algorithm, key.public_key())
    assert set(jwk) == members
    assert jwk["use"] == "sig"
    assert jwk["alg"] == algorithm
    # PyJWT reads the JWK back as the same public key.
    parsed = jwt.PyJWK(jwk).key
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert parsed.public_bytes(*raw) == key.public_key().public_bytes(*raw)


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        signing_keys.generate_private_key("HS256")


# --- lifecycle against the store ------------------------------------------------


def test_stored_private_keys_are_encrypted_under_the_root_key_and_their_kid(
    world: TokenWorld,
) -> None:
    kek = world.keys.key_encryption
    stored = stored_keys(world.store)
    assert len(stored) == 2
    for record in stored:
        blob = record.encrypted_private_key
        with pytest.raises(ValueError, match=r".+"):
            serialization.load_der_private_key(blob, password=None)
        key = decrypt_private_key(kek, record.id, blob)
        assert json.loads(record.public_jwk) == signing_keys.public_jwk(
            record.id, record.algorithm, key.public_key()
        )
        with pytest.raises(SigningKeyError):
            decrypt_private_key(world.keys.credential_hash, record.id, blob)  # another key
    # A ciphertext copied into the other key's row does not decrypt there.
    first, second = stored
    with pytest.raises(SigningKeyError):
        decrypt_private_key(kek, second.id, first.encrypted_private_key)


def test_ensure_keys_creates_one_current_and_one_next_once(world: TokenWorld) -> None:
    states = by_state(world.store)
    assert len(states[SigningKeyState.CURRENT]) == 1
    assert len(states[SigningKeyState.NEXT]) == 1
    before = {k.id for k in stored_keys(world.store)}
    # A second process starting later finds them and creates nothing.
    ring_for(world).ensure_keys()
    world.components.ring.ensure_keys()
    assert {k.id for k in stored_keys(world.store)} == before
    kid, alg, _ = world.components.ring.current_signer()
    assert kid in states[SigningKeyState.CURRENT]
    assert alg == "RS256"
    assert audit_actions(world.store).count("signing_key.create") == 2


def test_jwks_lists_next_current_previous_without_private_members(world: TokenWorld) -> None:
    ring = world.components.ring
    first = by_state(world.store)
    ring.rotate()
    second = by_state(world.store)
    jwks = ring.jwks()
    kids = [k["kid"] for k in jwks]
    assert sorted(kids) == sorted(
        second[SigningKeyState.NEXT]
        + second[SigningKeyState.CURRENT]
        + second[SigningKeyState.PREVIOUS]
    )
    assert first[SigningKeyState.CURRENT][0] in kids  # now PREVIOUS, still published
    assert len(kids) == 3
    for jwk in jwks:
        assert not PRIVATE_MEMBERS & set(jwk)
        assert jwk["use"] == "sig"
        assert jwk["alg"] == "RS256"
    # The stored public JWKs have no private members either.
    for key in stored_keys(world.store):
        assert not PRIVATE_MEMBERS & set(json.loads(key.public_jwk))


def test_rotation_flow_and_retirement(world: TokenWorld) -> None:
    ring = world.components.ring
    s = world.settings
    old_kid = ring.current_signer()[0]
    next_kid = by_state(world.store)[SigningKeyState.NEXT][0]
    old_token = sign(ring)
    world.clock.advance(100)
    current, nxt = ring.rotate(actor="ak_operator")
    now = world.clock()

    assert current.id == next_kid
    assert current.state is SigningKeyState.CURRENT
    assert current.activated_at == now
    assert nxt.state is SigningKeyState.NEXT
    assert nxt.id not in (old_kid, next_kid)
    assert ring.current_signer()[0] == next_kid
    old = next(k for k in stored_keys(world.store) if k.id == old_kid)
    assert old.state is SigningKeyState.PREVIOUS
    assert old.deactivated_at == now
    # Every token it signed has expired, plus leeway, plus one refresh period
    # during which another replica may still sign with it.
    assert old.retire_at == now + timedelta(
        seconds=s.max_token_ttl_seconds + s.clock_leeway_seconds + 30
    )
    with world.store.unit_of_work() as uow:
        events = uow.list_audit_events(AuditFilter(), before_id=None, limit=100)
    rotate = [e for e in events if e.action == "signing_key.rotate"]
    assert len(rotate) == 1
    assert rotate[0].actor == "ak_operator"
    assert rotate[0].details == {"previous": old_kid, "current": next_kid, "next": nxt.id}

    # Tokens of the old key still verify; new ones are signed by the new key.
    assert verifies(ring, old_token)
    assert jwt.get_unverified_header(sign(ring))["kid"] == next_kid

    # Just before retire_at: still published. At retire_at: no longer, even
    # before maintenance writes the state; maintenance then marks it RETIRED.
    assert old.retire_at is not None
    world.clock.now = old.retire_at - timedelta(seconds=1)
    assert old_kid in [k["kid"] for k in ring.jwks()]
    world.clock.now = old.retire_at
    assert old_kid not in [k["kid"] for k in ring.jwks()]
    assert ring.verification_key(old_kid) is None
    ring.maintenance()
    assert by_state(world.store)[SigningKeyState.RETIRED] == [old_kid]
    assert "signing_key.retire" in audit_actions(world.store)
    assert ring.verification_key(old_kid) is None
    assert not verifies(ring, old_token)
    # A later process never even loads it.
    fresh = ring_for(world)
    fresh.refresh()
    assert fresh.verification_key(old_kid) is None


def test_rotate_to_another_algorithm(world: TokenWorld) -> None:
    ring = world.components.ring
    _, nxt = ring.rotate(algorithm="ES256")
    assert nxt.algorithm == "ES256"
    assert ring.current_signer()[1] == "RS256"  # the NEXT key was RS256
    current, _ = ring.rotate()
    assert current.id == nxt.id
    kid, alg, key = ring.current_signer()
    assert (kid, alg) == (nxt.id, "ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    token = sign(ring)
    assert verifies(ring, token)
    assert {k["alg"] for k in ring.jwks()} >= {"ES256", "RS256"}


class _CrashAfterFirstUpdate(DelegatingStore):
    """A store whose unit of work fails right after the first signing-key update."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.armed = True

    @contextmanager
    def _uow(self) -> Iterator[UnitOfWork]:
        with self.inner.unit_of_work() as uow:
            yield _CrashingUow(uow, self)

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        return self._uow()


class _CrashingUow:
    def __init__(self, uow: UnitOfWork, owner: _CrashAfterFirstUpdate) -> None:
        self._uow = uow
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)

    def update_signing_key(self, key: SigningKey) -> None:
        self._uow.update_signing_key(key)
        if self._owner.armed:
            self._owner.armed = False
            raise RuntimeError("simulated crash in the middle of a rotation")


def test_failure_mid_rotation_leaves_a_usable_key_and_a_retry_completes(
    world: TokenWorld,
) -> None:
    crashing = _CrashAfterFirstUpdate(world.store)
    ring = ring_for(world, crashing)
    ring.ensure_keys()
    before = by_state(world.store)
    old_kid = ring.current_signer()[0]

    with pytest.raises(RuntimeError, match="simulated crash"):
        ring.rotate()

    # Nothing of the rotation was written: the first update rolled back too.
    assert by_state(world.store) == before
    assert "signing_key.rotate" not in audit_actions(world.store)
    assert ring.current_signer()[0] == old_kid
    assert verifies(ring, sign(ring))
    # Another process starting now still sees a consistent set.
    other = ring_for(world)
    other.ensure_keys()
    assert by_state(world.store) == before

    current, nxt = ring.rotate()  # the retry
    after = by_state(world.store)
    assert after[SigningKeyState.CURRENT] == before[SigningKeyState.NEXT] == [current.id]
    assert after[SigningKeyState.PREVIOUS] == [old_kid]
    assert after[SigningKeyState.NEXT] == [nxt.id]
    assert audit_actions(world.store).count("signing_key.rotate") == 1


def test_automatic_rotation_waits_for_the_interval_and_for_jwks_caches(
    world: TokenWorld,
) -> None:
    ring = ring_for(world, rotation_interval_seconds=3600, jwks_max_age_seconds=600)
    ring.ensure_keys()
    first = ring.current_signer()[0]
    world.clock.advance(3599)
    ring.maintenance()
    assert ring.current_signer()[0] == first
    world.clock.advance(1)
    ring.maintenance()
    second = ring.current_signer()[0]
    assert second != first
    assert by_state(world.store)[SigningKeyState.PREVIOUS] == [first]
    # The interval passes again, but the new NEXT (created at this rotation)
    # is only rotated in once published for jwks_max_age plus one refresh.
    world.clock.advance(3600)
    ring.maintenance()
    assert ring.current_signer()[0] != second  # 3600 >= 600 + 30: due
    # With the NEXT key too young, nothing happens however old CURRENT is.
    young = ring_for(world, rotation_interval_seconds=60, jwks_max_age_seconds=600)
    young.refresh()
    third = young.current_signer()[0]
    world.clock.advance(600 + 29)
    young.maintenance()
    assert young.current_signer()[0] == third
    world.clock.advance(1)
    young.maintenance()
    assert young.current_signer()[0] != third


def test_a_requested_rotation_publishes_first_and_promotes_after(world: TokenWorld) -> None:
    """Rotations in a row never sign with a key that verifiers caching the JWKS
    for jwks_max_age (and replicas refreshing every 30 s) may not hold yet."""
    ring = ring_for(world, rotation_interval_seconds=0, jwks_max_age_seconds=600)
    other = ring_for(world, rotation_interval_seconds=0, jwks_max_age_seconds=600)
    ring.ensure_keys()
    first = ring.current_signer()[0]
    [nxt] = by_state(world.store)[SigningKeyState.NEXT]
    created = next(k.created_at for k in stored_keys(world.store) if k.id == nxt)

    world.clock.advance(10)
    current, scheduled_next, at = ring.request_rotation(actor="ak_ops")
    assert (current.id, scheduled_next.id) == (first, nxt)
    assert at == created + timedelta(seconds=600 + 30)
    assert scheduled_next.activated_at == at
    assert ring.current_signer()[0] == first  # nothing signs differently yet
    # Asked again (or through another replica): the same schedule, nothing more.
    assert other.request_rotation(actor="ak_ops")[2] == at
    assert audit_actions(world.store).count("signing_key.rotate_scheduled") == 1

    world.clock.advance(600 + 30 - 10 - 1)
    other.maintenance()
    assert ring.current_signer()[0] == first
    world.clock.advance(1)
    other.maintenance()  # whichever replica gets there first promotes it
    ring.refresh()
    assert ring.current_signer()[0] == nxt
    assert by_state(world.store)[SigningKeyState.PREVIOUS] == [first]
    [newer] = by_state(world.store)[SigningKeyState.NEXT]
    assert next(k for k in stored_keys(world.store) if k.id == newer).activated_at is None

    # The NEXT key was published long ago: the rotation happens now.
    world.clock.advance(631)
    current, _, at = ring.request_rotation(actor="ak_ops")
    assert at is None
    assert current.id == newer == ring.current_signer()[0]

    # Asked for another algorithm while scheduled: a NEXT key of that algorithm is
    # published at once, and signs only one rotation later.
    _, waiting, at = ring.request_rotation("ES256", actor="ak_ops")
    assert at is not None
    nexts = by_state(world.store)[SigningKeyState.NEXT]
    assert len(nexts) == 2
    es256 = next(k for k in stored_keys(world.store) if k.id in nexts and k.id != waiting.id)
    assert es256.algorithm == "ES256"
    assert es256.id in {jwk["kid"] for jwk in ring.jwks()}
    world.clock.advance(631)
    ring.maintenance()
    assert ring.current_signer()[0] == waiting.id
    assert by_state(world.store)[SigningKeyState.NEXT] == [es256.id]


def test_an_emergency_rotation_promotes_at_once(world: TokenWorld) -> None:
    ring = ring_for(world, rotation_interval_seconds=0, jwks_max_age_seconds=600)
    ring.ensure_keys()
    [nxt] = by_state(world.store)[SigningKeyState.NEXT]
    current, _ = ring.rotate(actor="ak_ops")
    assert current.id == nxt == ring.current_signer()[0]


def test_automatic_rotation_off_when_interval_is_zero(world: TokenWorld) -> None:
    ring = ring_for(world, rotation_interval_seconds=0)
    ring.ensure_keys()
    kid = ring.current_signer()[0]
    world.clock.advance(10 * 365 * 86400)
    ring.maintenance()
    assert ring.current_signer()[0] == kid


def test_another_process_rotation_is_seen_on_refresh_and_on_unknown_kid(
    world: TokenWorld,
) -> None:
    here = world.components.ring
    there = ring_for(world)
    there.refresh()
    old_kid = here.current_signer()[0]
    there.rotate()
    # Until it refreshes, this process keeps signing with the old (still
    # published) key; its tokens stay valid everywhere.
    assert here.current_signer()[0] == old_kid
    here.maintenance()
    assert here.current_signer()[0] == there.current_signer()[0]

    # Two quick rotations elsewhere: the new current key was never NEXT in our
    # view. An unknown kid makes us re-read the store (rate-limited).
    there.rotate()
    there.rotate()
    token = sign(there)
    fresh = ring_for(world, unknown_kid_refresh_seconds=0.0)
    fresh.refresh()
    there.rotate()
    there.rotate()
    newest = sign(there)
    assert verifies(fresh, newest)  # found after one refresh
    assert verifies(fresh, token)


def test_made_up_kids_do_not_reread_the_store(
    world: TokenWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = ring_for(world, unknown_kid_refresh_seconds=3600.0)
    ring.refresh()
    reads = 0
    real = world.store.reading

    def counting() -> AbstractContextManager[UnitOfWork]:
        nonlocal reads
        reads += 1
        return real()

    monkeypatch.setattr(world.store, "reading", counting)
    for _ in range(50):
        assert ring.verification_key("key_" + "0" * 26) is None
        assert ring.verification_key("not-a-kid") is None
    assert reads == 0  # refreshed just now: rate-limited
    ring.refresh()
    assert reads == 1  # the counter does count the ring's reads


def test_an_event_loop_never_waits_for_the_ring_lock(world: TokenWorld) -> None:
    # Maintenance and rotation hold the lock through store writes and key
    # generation; a made-up kid tried on the event loop must go to a thread.
    ring = ring_for(world, unknown_kid_refresh_seconds=0.0)
    ring.ensure_keys()
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with ring._lock:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert holding.wait(10)
        with non_blocking(), pytest.raises(WouldBlock):
            ring.verification_key("key_" + "0" * 26)
    finally:
        release.set()
        holder.join(30)
    reads_block: bool = getattr(world.store, "reads_block", True)
    with non_blocking():  # free again: refreshed (in-memory and SQLite reads may run here)
        if reads_block:
            with pytest.raises(WouldBlock):
                ring.verification_key("key_" + "0" * 26)
        else:
            assert ring.verification_key("key_" + "0" * 26) is None


def test_keys_are_decrypted_once_per_process(
    world: TokenWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = signing_keys.decrypt_private_key

    def counting(kek: bytes, kid: str, blob: bytes) -> jws.PrivateKey:
        calls.append(kid)
        return real(kek, kid, blob)

    monkeypatch.setattr(signing_keys, "decrypt_private_key", counting)
    ring = ring_for(world)
    ring.refresh()
    assert len(calls) == 2
    for _ in range(20):
        sign(ring)
        ring.jwks()
    ring.maintenance()
    ring.refresh()
    assert len(calls) == 2
    ring.rotate()
    assert len(calls) == 3  # only the new NEXT key


def test_a_wrong_root_key_fails_loudly_at_start(world: TokenWorld) -> None:
    wrong = SigningKeyRing(world.store, secrets.token_bytes(32), world.clock)
    with pytest.raises(SigningKeyError, match="root key"):
        wrong.ensure_keys()


def test_signing_before_start_is_a_clear_error(world: TokenWorld) -> None:
    with pytest.raises(RuntimeError, match="ensure_keys"):
        ring_for(world).current_signer()
