"""The JWS algorithms m2mauth signs access tokens with (RFC 7518 section 3, RFC 8037).

RS256 is the default: every JWT library has it. Kept apart from
:mod:`m2mauth.core.signing_keys` so the CLI and settings can name them
without loading the cryptography stack.
"""

from __future__ import annotations

SIGNING_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
DEFAULT_SIGNING_ALGORITHM = "RS256"
