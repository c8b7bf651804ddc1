"""The scope grammar (RFC 6749 section 3.3), defined once for validation and issuance."""

from __future__ import annotations

import re

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
# (printable ASCII without space, '"' and '\').
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")


def is_scope_token(value: str) -> bool:
    return _SCOPE_TOKEN.fullmatch(value) is not None
