"""The keys that sign access tokens: generation, encryption at rest, JWKS, rotation.

Lifecycle (``models.SigningKeyState``), never backwards::

    NEXT ──rotate──> CURRENT ──rotate──> PREVIOUS ──retire_at passed──> RETIRED

* NEXT is published in the JWKS before it signs anything, so verifiers' caches
  hold it by the time the first token signed with it arrives (ory/hydra#2535).
* CURRENT signs every new token; there is exactly one.
* PREVIOUS no longer signs but stays published until every token it signed has
  expired, plus clock leeway, plus the refresh period (another replica may keep
  signing with it until it notices the rotation).
* RETIRED is neither published nor accepted for verification.

Private keys are PKCS#8 DER encrypted with AES-256-GCM under the derived
key-encryption key; the AAD is the key id, so a ciphertext copied into another
key's row does not decrypt. They are decrypted once per process and cached by
kid: signing never parses a key.

Every lifecycle change runs in one unit of work holding
``uow.lock_signing_keys()`` (a transaction-scoped advisory lock on PostgreSQL),
so processes starting at once end with one CURRENT and one NEXT, and a rotation
that fails half-way rolls back entirely: the old CURRENT keeps signing and a
retry completes it.

Each process holds an immutable in-memory view of the keys, replaced
atomically. ``maintenance()`` (called by the server every ~30 s) refreshes it,
retires expired PREVIOUS keys and rotates when due.

Rotations publish first and promote after. An operator's rotation
(``request_rotation()``) promotes NEXT only once it has been published for
longer than verifiers may cache the JWKS (``--jwks-max-age-seconds``) plus one
refresh period; asked earlier, it schedules the promotion for that moment
(the NEXT key's ``activated_at``, in the future while it is NEXT) and
``maintenance()`` on whichever replica gets there first carries it out. So
however many rotations are asked in a row, no key signs before every verifier
and every replica can hold it. ``rotate()`` promotes at once: the emergency
path (``keys rotate --now``, say a leaked key), announced to every replica in
its transaction; verifiers whose JWKS cache predates that NEXT key must
refetch on the unknown kid (the verify kit and most JWT libraries do).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from m2mauth.core import audit, defaults, ids
from m2mauth.core.algorithms import DEFAULT_SIGNING_ALGORITHM, SIGNING_ALGORITHMS
from m2mauth.core.blocking import WouldBlock, may_block
from m2mauth.core.changes import Change, Kind
from m2mauth.core.clock import Clock
from m2mauth.core.interfaces import Store, UnitOfWork
from m2mauth.core.jws import CompactSigner, PrivateKey, b64url
from m2mauth.core.models import SigningKey, SigningKeyState

log = logging.getLogger("m2mauth.keys")

ALGORITHMS = SIGNING_ALGORITHMS
SYSTEM_ACTOR = "system"
# Every other process reloads its key ring when this is announced (core/changes.py).
SIGNING_KEYS_CHANGED = Change(Kind.SIGNING_KEYS)
DEFAULT_REFRESH_INTERVAL_SECONDS = 30.0
# A kid we do not know triggers at most one store read per this many seconds,
# so tokens with made-up kids cannot turn introspection into a store flood.
UNKNOWN_KID_REFRESH_SECONDS = 1.0
_NONCE_BYTES = 12  # 96-bit GCM nonce (NIST SP 800-38D section 8.2)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class SigningKeyError(RuntimeError):
    """A stored signing key cannot be used (wrong root key, corrupt row)."""


# --- key material ---------------------------------------------------------------


def generate_private_key(algorithm: str) -> PrivateKey:
    """A new private key for ``algorithm`` (RFC 7518 section 3.1, RFC 8037 section 3.1)."""
    if algorithm == "RS256":
        # RFC 7518 section 3.3: at least 2048 bits.
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported signing algorithm {algorithm!r}; use one of {ALGORITHMS}")


def _b64url(data: bytes) -> str:
    return b64url(data).decode()


def _uint(value: int, length: int | None = None) -> bytes:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(size, "big")


def public_jwk(kid: str, algorithm: str, key: PublicKey) -> dict[str, str]:
    """The public JWK (RFC 7517 section 4, RFC 7518 section 6): public members only."""
    base = {"kid": kid, "alg": algorithm, "use": "sig"}
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        # RFC 7518 section 6.3.1: n and e as unsigned big-endian, minimal length.
        return {
            "kty": "RSA",
            **base,
            "n": _b64url(_uint(numbers.n)),
            "e": _b64url(_uint(numbers.e)),
        }
    if isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_numbers()
        # RFC 7518 section 6.2.1.2: coordinates padded to the curve size (32 bytes on P-256).
        return {
            "kty": "EC",
            **base,
            "crv": "P-256",
            "x": _b64url(_uint(point.x, 32)),
            "y": _b64url(_uint(point.y, 32)),
        }
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", **base, "crv": "Ed25519", "x": _b64url(raw)}  # RFC 8037 section 2


def encrypt_private_key(kek: bytes, kid: str, key: PrivateKey) -> bytes:
    """nonce || AES-256-GCM(PKCS#8 DER), the kid as associated data."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, der, kid.encode())


def decrypt_private_key(kek: bytes, kid: str, blob: bytes) -> PrivateKey:
    """Inverse of :func:`encrypt_private_key`; SigningKeyError on any mismatch."""
    try:
        der = AESGCM(kek).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], kid.encode())
    except (InvalidTag, ValueError) as exc:
        raise SigningKeyError(
            f"cannot decrypt signing key {kid}: is this the root key the database was created with?"
        ) from exc
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise SigningKeyError(f"signing key {kid} has an unsupported key type")
    return key


def new_signing_key(
    kek: bytes,
    algorithm: str,
    state: SigningKeyState,
    now: datetime,
    private_key: PrivateKey | None = None,
    after: str | None = None,
) -> SigningKey:
    """A new key record; its private half encrypted, its public half as JWK JSON.

    Its id sorts after ``after`` (the newest existing key id), so "newest
    first" by id lists NEXT, CURRENT, PREVIOUS even when keys are created in
    the same millisecond or another replica's clock runs ahead.
    """
    key = private_key if private_key is not None else generate_private_key(algorithm)
    ms = int(now.timestamp() * 1000)
    if after is not None:
        ms = max(ms, ids.time_ms(after) + 1)
    kid = ids.new_id(ids.SIGNING_KEY, ms)
    return SigningKey(
        id=kid,
        algorithm=algorithm,
        state=state,
        encrypted_private_key=encrypt_private_key(kek, kid, key),
        public_jwk=json.dumps(
            public_jwk(kid, algorithm, key.public_key()), sort_keys=True, separators=(",", ":")
        ),
        created_at=now,
        activated_at=now if state is SigningKeyState.CURRENT else None,
    )


# --- the in-memory view ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """What verifying a token needs: the algorithm to pin (RFC 8725 section 3.1)
    and the public key."""

    kid: str
    algorithm: str
    key: PublicKey


@dataclass(frozen=True, slots=True)
class _Material:
    """Parsed once per process per kid; never changes for a kid."""

    private_key: PrivateKey
    public_key: PublicKey
    jwk: dict[str, str]
    signer: CompactSigner


@dataclass(frozen=True, slots=True)
class _View:
    records: dict[str, SigningKey]  # every non-RETIRED key by kid
    material: dict[str, _Material]
    current: SigningKey | None
    refreshed_at: float  # time.monotonic()


_EMPTY = _View(records={}, material={}, current=None, refreshed_at=float("-inf"))


def _published(record: SigningKey, now: datetime) -> bool:
    """NEXT, CURRENT, and PREVIOUS until retire_at (even before maintenance marks it)."""
    if record.state is SigningKeyState.RETIRED:
        return False
    if record.state is SigningKeyState.PREVIOUS:
        return record.retire_at is None or record.retire_at > now
    return True


class SigningKeyRing:
    """This process's view of the signing keys, and the key lifecycle operations.

    Thread-safe: readers take the current immutable view without a lock;
    refreshes and lifecycle changes serialise on one in-process lock (and on
    the store's signing-key lock across processes).
    """

    def __init__(
        self,
        store: Store,
        key_encryption_key: bytes,
        clock: Clock,
        *,
        algorithm: str = DEFAULT_SIGNING_ALGORITHM,
        max_token_ttl_seconds: int = defaults.MAX_TOKEN_TTL_SECONDS,
        clock_leeway_seconds: int = defaults.CLOCK_LEEWAY_SECONDS,
        rotation_interval_seconds: int = defaults.KEY_ROTATION_INTERVAL_SECONDS,
        jwks_max_age_seconds: int = defaults.JWKS_MAX_AGE_SECONDS,
        refresh_interval_seconds: float = DEFAULT_REFRESH_INTERVAL_SECONDS,
        unknown_kid_refresh_seconds: float = UNKNOWN_KID_REFRESH_SECONDS,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {algorithm!r}")
        self._store = store
        self._kek = key_encryption_key
        self._clock = clock
        self.algorithm = algorithm
        self._max_ttl = max_token_ttl_seconds
        self._leeway = clock_leeway_seconds
        self._rotation_interval = rotation_interval_seconds
        self._jwks_max_age = jwks_max_age_seconds
        self._refresh_interval = refresh_interval_seconds
        self._unknown_kid_refresh = unknown_kid_refresh_seconds
        self._lock = threading.RLock()
        self._view = _EMPTY

    # --- reading (hot path: no store access, no parsing) ------------------
    def current_signer(self) -> tuple[str, str, PrivateKey]:
        """(kid, alg, private key) of the CURRENT key."""
        view = self._view
        if view.current is None:
            raise RuntimeError("no current signing key: call ensure_keys() at start-up")
        return (
            view.current.id,
            view.current.algorithm,
            view.material[view.current.id].private_key,
        )

    def signer(self) -> CompactSigner:
        """The CURRENT key's signer, its header already encoded."""
        view = self._view
        if view.current is None:
            raise RuntimeError("no current signing key: call ensure_keys() at start-up")
        return view.material[view.current.id].signer

    def jwks(self) -> list[dict[str, str]]:
        """Public JWKs of the NEXT, CURRENT and unexpired PREVIOUS keys (RFC 7517 section 5)."""
        view = self._view
        now = self._clock()
        return [
            dict(view.material[kid].jwk)
            for kid, record in sorted(view.records.items(), reverse=True)
            if _published(record, now)
        ]

    def verification_key(self, kid: str) -> VerificationKey | None:
        """The public key for ``kid`` if it is NEXT, CURRENT or PREVIOUS; else None.

        An unknown kid refreshes the view first (rate-limited), so a key
        another replica created is found; this may raise StoreUnavailable.
        """
        view = self._view
        if (
            kid not in view.records
            and ids.is_id(kid, ids.SIGNING_KEY)
            and self._unknown_kid_refresh_due(view)
        ):
            # Maintenance and rotation hold this lock through store writes and
            # key generation: an event loop must not wait for it (a forged kid
            # would stall every request of the process), so it hands the call
            # to a thread instead.
            if not self._lock.acquire(blocking=may_block()):
                raise WouldBlock
            try:
                if kid not in self._view.records and self._unknown_kid_refresh_due(self._view):
                    self._refresh_locked()
            finally:
                self._lock.release()
            view = self._view
        record = view.records.get(kid)
        if record is None or not _published(record, self._clock()):
            return None
        return VerificationKey(kid, record.algorithm, view.material[kid].public_key)

    def _unknown_kid_refresh_due(self, view: _View) -> bool:
        return time.monotonic() - view.refreshed_at >= self._unknown_kid_refresh

    # --- the change feed (core/changes.py) -----------------------------------
    def changed(self, change: Change) -> None:
        """Another process created, promoted or retired a key: reload at once, so
        this process publishes every key any process may sign with."""
        if change.kind is Kind.SIGNING_KEYS:
            self.refresh()

    def reset(self) -> None:
        self.refresh()

    # --- store-backed operations -------------------------------------------
    def refresh(self) -> None:
        """Reload the key records from the store (one read); parse only new kids."""
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        with self._store.reading() as uow:
            records = uow.list_signing_keys()
        self._install(records)

    def _install(self, records: list[SigningKey]) -> None:
        old = self._view
        live = {r.id: r for r in records if r.state is not SigningKeyState.RETIRED}
        material: dict[str, _Material] = {}
        for kid, record in live.items():
            cached = old.material.get(kid)
            if cached is None:
                private = decrypt_private_key(self._kek, kid, record.encrypted_private_key)
                public = private.public_key()
                cached = _Material(
                    private,
                    public,
                    public_jwk(kid, record.algorithm, public),
                    CompactSigner(kid, record.algorithm, private),
                )
            material[kid] = cached
        currents = [r for r in live.values() if r.state is SigningKeyState.CURRENT]
        # Exactly one CURRENT is the invariant; if a broken store had several,
        # the most recently activated one is the one that signs.
        current = max(currents, key=_activation_order, default=None)
        self._view = _View(live, material, current, time.monotonic())

    def ensure_keys(self) -> None:
        """At start-up: make sure there is one CURRENT and one NEXT key.

        Processes starting at once on one database serialise on the store's
        signing-key lock, and each re-reads under it, so exactly one of them
        creates the keys and the others find them.
        """
        with self._lock:
            with self._store.unit_of_work() as uow:
                uow.lock_signing_keys()
                now = self._clock()
                self._retire_expired(uow, uow.list_signing_keys(), now)
                self._repair(uow, uow.list_signing_keys(), now)
                records = uow.list_signing_keys()
            self._install(records)

    def rotate(
        self, algorithm: str | None = None, actor: str = SYSTEM_ACTOR
    ) -> tuple[SigningKey, SigningKey]:
        """NEXT -> CURRENT, CURRENT -> PREVIOUS, new NEXT, now; return (current, next).

        Promotes the NEXT key however recently it was published (the emergency
        path): a verifier whose JWKS cache predates it refetches on the unknown
        kid. All changes and the audit event commit together.
        """
        current, nxt, _ = self._rotation(algorithm, actor, wait=False)
        return current, nxt

    def request_rotation(
        self, algorithm: str | None = None, actor: str = SYSTEM_ACTOR
    ) -> tuple[SigningKey, SigningKey, datetime | None]:
        """Rotate as soon as every verifier can hold the NEXT key: now if it has
        been published long enough, else at that moment.

        Returns (current, next, scheduled): ``scheduled`` is None when the
        rotation happened now (then ``current`` is the key that signs from
        now); else it is when the NEXT key will be promoted, and ``next``
        carries it as ``activated_at``. Asked again before then, it returns the
        same schedule. An ``algorithm`` other than the NEXT key's publishes a
        new NEXT key of that algorithm at once, which the rotation after this
        one promotes (publish first, again).
        """
        return self._rotation(algorithm, actor, wait=True)

    def _rotation(
        self, algorithm: str | None, actor: str, *, wait: bool
    ) -> tuple[SigningKey, SigningKey, datetime | None]:
        alg = algorithm or self.algorithm
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        # RSA generation takes tens of milliseconds: do it before taking the lock.
        fresh = generate_private_key(alg)
        with self._lock:
            with self._store.unit_of_work() as uow:
                uow.lock_signing_keys()
                now = self._clock()
                keys = uow.list_signing_keys()
                nexts = sorted(
                    (k for k in keys if k.state is SigningKeyState.NEXT), key=lambda k: k.id
                )
                has_current = any(k.state is SigningKeyState.CURRENT for k in keys)
                if wait and nexts and has_current and self._safe_to_promote(nexts[0]) > now:
                    current, nxt, scheduled = self._schedule(
                        uow, keys, nexts, now, alg, fresh, actor
                    )
                else:
                    # Nothing to wait for (or a broken store to repair): promote now.
                    current, nxt = self._rotate_in(uow, keys, now, alg, fresh, actor)
                    scheduled = None
                records = uow.list_signing_keys()
            self._install(records)
        return current, nxt, scheduled

    def _safe_to_promote(self, key: SigningKey) -> datetime:
        """When every verifier's JWKS cache and every replica's ring hold ``key``."""
        return key.created_at + timedelta(seconds=self._jwks_max_age + self._refresh_interval)

    def _schedule(
        self,
        uow: UnitOfWork,
        keys: list[SigningKey],
        nexts: list[SigningKey],
        now: datetime,
        algorithm: str,
        fresh: PrivateKey,
        actor: str,
    ) -> tuple[SigningKey, SigningKey, datetime]:
        current = max(
            (k for k in keys if k.state is SigningKeyState.CURRENT), key=_activation_order
        )
        first = nexts[0]
        at = first.activated_at or self._safe_to_promote(first)
        if first.activated_at is None:
            first = dataclasses.replace(first, activated_at=at)
            uow.update_signing_key(first)
            uow.announce(SIGNING_KEYS_CHANGED)
            uow.add_audit_event(
                audit.event(
                    now,
                    actor,
                    "signing_key.rotate_scheduled",
                    target=first.id,
                    details={"current": current.id, "promote_at": at.isoformat()},
                )
            )
            log.info(
                "signing key rotation scheduled",
                extra={"kid": first.id, "promote_at": at.isoformat(), "actor": actor},
            )
        if algorithm != first.algorithm and not any(k.algorithm == algorithm for k in nexts[1:]):
            self._new(uow, algorithm, SigningKeyState.NEXT, now, fresh)
        return current, first, at

    def maintenance(self) -> None:
        """The periodic job: refresh, retire expired PREVIOUS keys, rotate when due."""
        with self._lock:
            self._refresh_locked()
            view = self._view
            now = self._clock()
            nexts = [r for r in view.records.values() if r.state is SigningKeyState.NEXT]
            if view.current is None or not nexts:
                self.ensure_keys()
                return
            expired = any(
                r.state is SigningKeyState.PREVIOUS and not _published(r, now)
                for r in view.records.values()
            )
            if not expired and not self._rotation_due(list(view.records.values()), now):
                return
            with self._store.unit_of_work() as uow:
                uow.lock_signing_keys()
                now = self._clock()
                # Re-read under the lock: another replica may have just done this.
                keys = uow.list_signing_keys()
                self._retire_expired(uow, keys, now)
                if self._rotation_due(keys, now):
                    fresh = generate_private_key(self.algorithm)
                    self._rotate_in(uow, keys, now, self.algorithm, fresh, SYSTEM_ACTOR)
                records = uow.list_signing_keys()
            self._install(records)

    def list_keys(self) -> list[SigningKey]:
        """Every stored key, newest first (for the management API)."""
        with self._store.reading() as uow:
            return uow.list_signing_keys()

    # --- lifecycle steps, each inside a unit of work holding the key lock -----
    def _new(
        self,
        uow: UnitOfWork,
        algorithm: str,
        state: SigningKeyState,
        now: datetime,
        private_key: PrivateKey | None = None,
    ) -> SigningKey:
        existing = uow.list_signing_keys()  # newest first
        newest = existing[0].id if existing else None
        key = new_signing_key(self._kek, algorithm, state, now, private_key, after=newest)
        uow.add_signing_key(key)
        uow.announce(SIGNING_KEYS_CHANGED)
        uow.add_audit_event(
            audit.event(
                now,
                SYSTEM_ACTOR,
                "signing_key.create",
                target=key.id,
                details={"algorithm": algorithm, "state": state.value},
            )
        )
        return key

    def _retire_at(self, now: datetime) -> datetime:
        # Every token the key signed has expired (at most max TTL after the last
        # one, which another replica may sign up to one refresh period late),
        # plus the leeway verifiers allow for clock skew.
        return now + timedelta(seconds=self._max_ttl + self._leeway + self._refresh_interval)

    def _demote(self, uow: UnitOfWork, key: SigningKey, now: datetime) -> SigningKey:
        demoted = dataclasses.replace(
            key,
            state=SigningKeyState.PREVIOUS,
            deactivated_at=now,
            retire_at=self._retire_at(now),
        )
        uow.update_signing_key(demoted)
        uow.announce(SIGNING_KEYS_CHANGED)
        return demoted

    def _promote(self, uow: UnitOfWork, key: SigningKey, now: datetime) -> SigningKey:
        promoted = dataclasses.replace(key, state=SigningKeyState.CURRENT, activated_at=now)
        uow.update_signing_key(promoted)
        uow.announce(SIGNING_KEYS_CHANGED)
        return promoted

    def _repair(self, uow: UnitOfWork, keys: list[SigningKey], now: datetime) -> None:
        currents = sorted(
            (k for k in keys if k.state is SigningKeyState.CURRENT), key=_activation_order
        )
        nexts = sorted(k.id for k in keys if k.state is SigningKeyState.NEXT)
        by_id = {k.id: k for k in keys}
        for extra in currents[:-1]:
            log.warning("more than one CURRENT signing key; demoting %s", extra.id)
            self._demote(uow, extra, now)
        if not currents:
            if nexts:
                # Already published: promoting it is safer than a never-seen key.
                promoted = self._promote(uow, by_id[nexts.pop(0)], now)
            else:
                # First start: nothing is published yet, so nobody can miss it.
                promoted = self._new(uow, self.algorithm, SigningKeyState.CURRENT, now)
            log.info("no current signing key; %s now signs", promoted.id)
        if not nexts:
            self._new(uow, self.algorithm, SigningKeyState.NEXT, now)

    def _rotate_in(
        self,
        uow: UnitOfWork,
        keys: list[SigningKey],
        now: datetime,
        algorithm: str,
        fresh: PrivateKey,
        actor: str,
    ) -> tuple[SigningKey, SigningKey]:
        currents = [k for k in keys if k.state is SigningKeyState.CURRENT]
        nexts = sorted((k for k in keys if k.state is SigningKeyState.NEXT), key=lambda k: k.id)
        for old in currents:
            self._demote(uow, old, now)
        if nexts:
            # The NEXT key published longest is the one verifiers most likely cache.
            promoted = self._promote(uow, nexts[0], now)
            remaining = nexts[1:]
        else:  # a broken store without a NEXT key: sign with a brand-new one
            promoted = self._new(uow, self.algorithm, SigningKeyState.CURRENT, now)
            remaining = []
        nxt = (
            remaining[0]
            if remaining
            else self._new(uow, algorithm, SigningKeyState.NEXT, now, fresh)
        )
        uow.add_audit_event(
            audit.event(
                now,
                actor,
                "signing_key.rotate",
                target=promoted.id,
                details={
                    "previous": ",".join(k.id for k in currents),
                    "current": promoted.id,
                    "next": nxt.id,
                },
            )
        )
        log.info(
            "rotated signing keys",
            extra={"kid": promoted.id, "next_kid": nxt.id, "actor": actor},
        )
        return promoted, nxt

    def _retire_expired(self, uow: UnitOfWork, keys: list[SigningKey], now: datetime) -> None:
        for key in keys:
            if key.state is SigningKeyState.PREVIOUS and not _published(key, now):
                uow.update_signing_key(dataclasses.replace(key, state=SigningKeyState.RETIRED))
                uow.announce(SIGNING_KEYS_CHANGED)
                uow.add_audit_event(
                    audit.event(now, SYSTEM_ACTOR, "signing_key.retire", target=key.id)
                )
                log.info("retired signing key", extra={"kid": key.id})

    def _rotation_due(self, keys: list[SigningKey], now: datetime) -> bool:
        """A scheduled rotation whose time has come; or automatic rotation: CURRENT
        older than the interval, and NEXT published long enough that every
        verifier's JWKS cache holds it."""
        if any(
            k.state is SigningKeyState.NEXT and k.activated_at is not None and k.activated_at <= now
            for k in keys
        ):
            return True
        if self._rotation_interval <= 0:
            return False
        current = max(
            (k for k in keys if k.state is SigningKeyState.CURRENT),
            key=_activation_order,
            default=None,
        )
        nexts = [k for k in keys if k.state is SigningKeyState.NEXT]
        if current is None or not nexts:
            return False
        activated = current.activated_at or current.created_at
        published = min(k.created_at for k in nexts)
        # Other replicas serve a new NEXT key from their next refresh on.
        cached_everywhere = published + timedelta(
            seconds=self._jwks_max_age + self._refresh_interval
        )
        return (
            activated + timedelta(seconds=self._rotation_interval) <= now
            and cached_everywhere <= now
        )


def _activation_order(key: SigningKey) -> tuple[datetime, str]:
    return (key.activated_at or key.created_at, key.id)


def jwk_from_json(text: str) -> dict[str, Any]:
    """The stored public JWK JSON as a dict (for the management API)."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise SigningKeyError("a stored public JWK is not a JSON object")
    return value
