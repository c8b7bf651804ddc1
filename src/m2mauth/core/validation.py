"""Field validation shared by the management operations. Raises InvalidField."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from m2mauth.core import ids
from m2mauth.core.echo import looks_like_credential, shown
from m2mauth.core.errors import InvalidField, NotFound
from m2mauth.core.scopes import is_scope_token

MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 128
MAX_AUDIENCES = 20
MAX_AUDIENCE_LENGTH = 512

_NO_WHITESPACE_PRINTABLE = re.compile(r"^[\x21-\x7E]+$")


def _is_control(c: str) -> bool:
    # C0, DEL and C1 (Unicode category Cc): invisible in logs and UIs, and
    # a NUL is refused by PostgreSQL text columns (a 500 instead of a 400).
    return unicodedata.category(c) == "Cc"


# Characters that change how text around them is shown without being seen:
# Unicode category Cf (format) holds the bidirectional controls -- U+202A-202E
# embeddings and overrides, U+2066-2069 isolates, U+200E/U+200F marks, U+061C
# (Unicode Standard Annex #9) -- and the zero-width U+200B-200D, U+2060 and
# U+FEFF, the soft hyphen and the tag characters. In a name they make "Acme"
# and "Acme\u200b" two organizations that look the same, or show an admin key
# called "\u202egnp.exe" reversed in the audit log ("Trojan Source",
# CVE-2021-42574). Line and paragraph separators (Zl, Zp) break a log line.
# Surrogates (Cs) cannot be encoded as UTF-8 for the store.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Zl", "Zp", "Cs"})


def _invisible(value: str) -> str | None:
    """The first invisible or direction-changing character of ``value``, if any."""
    return next((c for c in value if unicodedata.category(c) in _INVISIBLE_CATEGORIES), None)


def _no_invisible(field: str, value: str) -> None:
    found = _invisible(value)
    if found is not None:
        raise InvalidField(
            field,
            "must not contain invisible or text-direction characters "
            f"(found U+{ord(found):04X} {unicodedata.name(found, 'unnamed')})",
        )


def no_credential(field: str, value: str) -> str:
    """Refuse what looks like an admin key, client secret or token: a name or a
    scope is stored and shown, and a secret pasted there would be too."""
    if looks_like_credential(value):
        raise InvalidField(
            field, "must not contain a credential (an admin key, a client secret or a token)"
        )
    return value


def name(field: str, value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise InvalidField(field, "is required")
    if len(stripped) > MAX_NAME:
        raise InvalidField(field, f"must be at most {MAX_NAME} characters")
    if any(_is_control(c) for c in stripped):
        raise InvalidField(field, "must not contain control characters")
    _no_invisible(field, stripped)
    return no_credential(field, stripped)


def optional_text(field: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidField(field, f"must be at most {limit} characters")
    if any(_is_control(c) and c not in "\n\t" for c in value):
        raise InvalidField(field, "must not contain control characters")
    _no_invisible(field, value)
    return no_credential(field, value)


def external_id(value: str) -> str | None:
    if value == "":
        return None
    return name("external_id", value)


def scopes(values: Sequence[str]) -> tuple[str, ...]:
    if len(values) > MAX_SCOPES:
        raise InvalidField("scopes", f"at most {MAX_SCOPES} scopes")
    seen: set[str] = set()
    for i, scope in enumerate(values):
        if not is_scope_token(scope) or len(scope) > MAX_SCOPE_LENGTH:
            raise InvalidField(
                f"scopes[{i}]",
                f"must be 1 to {MAX_SCOPE_LENGTH} printable ASCII characters without "
                "space, '\"' or '\\' (RFC 6749 section 3.3)",
            )
        no_credential(f"scopes[{i}]", scope)
        if scope in seen:
            raise InvalidField(f"scopes[{i}]", f"duplicate scope {shown(scope)}")
        seen.add(scope)
    return tuple(values)


def audiences(values: Sequence[str]) -> tuple[str, ...]:
    if len(values) > MAX_AUDIENCES:
        raise InvalidField("audiences", f"at most {MAX_AUDIENCES} audiences")
    seen: set[str] = set()
    for i, aud in enumerate(values):
        if not _NO_WHITESPACE_PRINTABLE.match(aud) or len(aud) > MAX_AUDIENCE_LENGTH:
            raise InvalidField(
                f"audiences[{i}]",
                f"must be 1 to {MAX_AUDIENCE_LENGTH} printable ASCII characters, no spaces",
            )
        no_credential(f"audiences[{i}]", aud)
        if aud in seen:
            raise InvalidField(f"audiences[{i}]", f"duplicate audience {shown(aud)}")
        seen.add(aud)
    return tuple(values)


def token_ttl(value: int, max_ttl: int) -> int:
    """0 (the server default) up to the server's --max-token-ttl-seconds."""
    if not 0 <= value <= max_ttl:
        raise InvalidField("token_ttl_seconds", f"must be 0 to {max_ttl}")
    return value


def resource_id(field: str, value: str, prefix: str, resource: str) -> str:
    """A required id field: empty is INVALID_ARGUMENT, malformed is NOT_FOUND.

    A well-formed-looking but unknown id and a malformed one are both simply
    absent, so both are NOT_FOUND (clients need not know our id grammar).
    """
    if not value:
        raise InvalidField(field, "is required")
    if not ids.is_id(value, prefix):
        raise NotFound(resource, value)
    return value


def update_mask(paths: Sequence[str], allowed: Sequence[str]) -> set[str]:
    """AIP-134 update mask: named paths or "*"; empty or unknown is invalid."""
    if not paths:
        raise InvalidField("update_mask", f"is required: name fields among {', '.join(allowed)}")
    if list(paths) == ["*"]:
        return set(allowed)
    chosen: set[str] = set()
    for path in paths:
        if path not in allowed:
            raise InvalidField(
                "update_mask", f"{path!r} cannot be updated; allowed: {', '.join(allowed)}"
            )
        chosen.add(path)
    return chosen


MAX_TOKEN_QUOTA_PER_MINUTE = 1_000_000


def token_quota(value: int) -> int:
    """0 (no quota) or a positive number of tokens per minute."""
    if not 0 <= value <= MAX_TOKEN_QUOTA_PER_MINUTE:
        raise InvalidField(
            "token_quota_per_minute", f"must be 0 (no quota) to {MAX_TOKEN_QUOTA_PER_MINUTE}"
        )
    return value
