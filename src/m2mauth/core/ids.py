"""Type-prefixed, time-sortable, opaque ids such as ``org_01JD...``.

The body is a ULID (48-bit millisecond time + 80 random bits, Crockford
base32): ids sort by creation time, so keyset pagination by id lists oldest
first, and they reveal nothing but their creation time.
"""

from __future__ import annotations

import re
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

ORGANIZATION = "org"
APPLICATION = "app"
CLIENT = "client"
CLIENT_SECRET = "secret"  # noqa: S105 - an id prefix, not a secret
SIGNING_KEY = "key"
AUDIT_EVENT = "evt"
ADMIN_KEY = "ak"
TOKEN = "tok"  # noqa: S105 - an id prefix

_BODY_LENGTH = 26
_TIME_LENGTH = 10  # 48 bits of milliseconds in the first 10 characters
_BODY = re.compile(f"[{re.escape(_CROCKFORD)}]{{{_BODY_LENGTH}}}")


def new_id(prefix: str, now_ms: int | None = None) -> str:
    """Return a new id ``<prefix>_<26 chars>``."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    chars = []
    for _ in range(_BODY_LENGTH):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` is well-formed for ``prefix`` (says nothing of existence)."""
    head, sep, body = value.partition("_")
    return sep == "_" and head == prefix and _BODY.fullmatch(body) is not None


def time_ms(value: str) -> int:
    """The creation time, in milliseconds, that a well-formed id carries."""
    body = value.partition("_")[2]
    ms = 0
    for char in body[:_TIME_LENGTH]:
        ms = ms * 32 + _CROCKFORD.index(char)
    return ms
