"""What of a caller's input may be repeated: in an error message, a log line, a
stored name.

A secret typed into the wrong field is still a secret (ARCHITECTURE.md,
invariants). Our credentials have recognisable shapes (admin keys and client
secrets carry a ``m2m_ak_``/``m2m_cs_`` prefix, access tokens are compact JWS
whose header starts ``eyJ``), so input that has one of those shapes is never
echoed, and never accepted as a name; anything long is not echoed either.
"""

from __future__ import annotations

import re

from m2mauth.core.credentials import ADMIN_KEY_PREFIX, CLIENT_SECRET_PREFIX

# A JOSE header is a JSON object: base64url of '{"' is "eyJ". Two dot-separated
# base64url parts after it are the shape of a JWS or JWE.
_TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.")
MAX_ECHOED = 80
NOT_SHOWN = "(value not shown)"


def looks_like_credential(value: str) -> bool:
    return ADMIN_KEY_PREFIX in value or CLIENT_SECRET_PREFIX in value or bool(_TOKEN.search(value))


def shown(value: str) -> str:
    """The value quoted for a message, unless it may be a secret or is too long."""
    if len(value) > MAX_ECHOED or looks_like_credential(value):
        return NOT_SHOWN
    return repr(value)
