"""Client secrets and admin keys: generation, keyed hashing, constant-time checks.

Why a keyed hash and not a password KDF (bcrypt, scrypt, Argon2): these
credentials are 256 bits from :mod:`secrets`, not human passwords. Nobody can
guess or brute-force 2^256 candidates, so a deliberately slow hash buys no
security, while it would cap the token endpoint at a few hundred requests per
second per core (the lesson of ory/hydra#168 and #1477). HMAC-SHA-256 with a
server-held key (derived from the root key) also means a stolen database alone
does not let anyone test candidate secrets offline.

Credentials carry a recognisable prefix so secret scanners can find leaked
ones: ``m2m_cs_`` for client secrets, ``m2m_ak_`` for admin keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CLIENT_SECRET_PREFIX = "m2m_cs_"  # noqa: S105 - a public prefix
ADMIN_KEY_PREFIX = "m2m_ak_"
_RANDOM_BYTES = 32  # 256 bits, RFC 6749 section 10.10 asks for unguessable credentials
HINT_LENGTH = 4
# Longest credential we hash; anything longer cannot be ours (prefix + 43 chars).
MAX_CREDENTIAL_LENGTH = 256


class CredentialHasher:
    """Makes and checks credentials against their stored keyed hash."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        # A fixed hash to compare against when there is no stored one, so that
        # an unknown client takes the same work as a known one with a wrong
        # secret (RFC 6749 section 2.3.1 asks to resist probing).
        self.decoy_hash = self.hash("decoy-credential-never-issued")

    def hash(self, credential: str) -> bytes:
        return hmac.new(self._key, credential.encode(), hashlib.sha256).digest()

    @staticmethod
    def generate(prefix: str) -> str:
        return prefix + secrets.token_urlsafe(_RANDOM_BYTES)

    @staticmethod
    def hint(credential: str) -> str:
        return credential[-HINT_LENGTH:]

    def matches(self, credential: str, stored_hash: bytes) -> bool:
        """Constant-time comparison of the credential's hash with a stored one."""
        return hmac.compare_digest(self.hash(credential[:MAX_CREDENTIAL_LENGTH]), stored_hash)
