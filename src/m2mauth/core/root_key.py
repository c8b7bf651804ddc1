"""The server's root key and the purpose-specific keys derived from it.

One 32-byte root key (``M2MAUTH_ROOT_KEY``/``--root-key-file``) is the only
secret an operator must keep. HKDF-SHA-256 (RFC 5869) derives from it one
independent key per purpose, so no key is ever used for two things:

* ``key-encryption``: AES-256-GCM key that encrypts signing keys at rest;
* ``credential-hash``: HMAC key for client-secret and admin-key hashes;
* ``page-token``: HMAC key that makes page tokens tamper-evident.

Every replica on one database must be given the same root key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ROOT_KEY_BYTES = 32


class RootKeyError(ValueError):
    """The configured root key is missing or malformed."""


def _derive(root: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"m2mauth-v1",
        info=purpose.encode(),
    ).derive(root)


@dataclass(frozen=True, slots=True)
class DerivedKeys:
    key_encryption: bytes
    credential_hash: bytes
    page_token: bytes
    # Keys the fingerprints of malformed credentials in the audit log.
    audit_fingerprint: bytes
    # Signs the web console's session cookies and CSRF tokens.
    console_session: bytes

    @classmethod
    def from_root(cls, root: bytes) -> DerivedKeys:
        if len(root) != ROOT_KEY_BYTES:
            raise RootKeyError(f"the root key must be {ROOT_KEY_BYTES} bytes")
        return cls(
            key_encryption=_derive(root, "key-encryption"),
            credential_hash=_derive(root, "credential-hash"),
            page_token=_derive(root, "page-token"),
            audit_fingerprint=_derive(root, "audit-fingerprint"),
            console_session=_derive(root, "console-session"),
        )


def parse_root_key(text: str) -> bytes:
    """Decode a base64 (standard or url-safe) root key."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(
            cleaned.replace("+", "-").replace("/", "_") + "=" * (-len(cleaned) % 4)
        )
    except (binascii.Error, ValueError) as exc:
        raise RootKeyError("the root key is not valid base64") from exc
    if len(raw) != ROOT_KEY_BYTES:
        raise RootKeyError(
            f"the root key must decode to {ROOT_KEY_BYTES} bytes, got {len(raw)}; "
            "make one with: python3 -c 'import secrets,base64;"
            "print(base64.b64encode(secrets.token_bytes(32)).decode())'"
        )
    return raw


def load_or_create_root_key_file(path: Path) -> tuple[bytes, bool]:
    """Read the root key file, creating it (mode 0600) if absent.

    Returns the key and whether it was created now. Only the embedded
    development default uses this; production settings require the key.
    """
    if path.exists():
        return parse_root_key(path.read_text()), False
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = secrets.token_bytes(ROOT_KEY_BYTES)
    # O_EXCL: two processes starting at once must not both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_root_key(path.read_text()), False
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(raw).decode() + "\n")
    return raw, True
