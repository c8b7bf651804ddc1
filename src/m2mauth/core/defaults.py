"""The token side's defaults, defined once: settings declare them, and the core's
classes fall back to them when built without settings (tests, tools)."""

from __future__ import annotations

TOKEN_TTL_SECONDS = 3600
MAX_TOKEN_TTL_SECONDS = 86400
KEY_ROTATION_INTERVAL_SECONDS = 30 * 86400
JWKS_MAX_AGE_SECONDS = 900
CLOCK_LEEWAY_SECONDS = 60
# How far ahead a private_key_jwt client assertion's exp may be (RFC 7523 section 3
# asks for an exp; a short one bounds what a stolen, unused assertion is worth: a
# used one is refused anyway, its jti is remembered until exp). An hour, because
# that is what common clients sign for by default (authlib's PrivateKeyJWT: iat +
# 3600); operators whose partners sign shorter ones may lower it.
CLIENT_ASSERTION_MAX_LIFETIME_SECONDS = 3600
MAX_CLIENT_SECRETS = 5
AUDIT_RETENTION_DAYS = 90
