"""Opaque, tamper-evident page tokens (AIP-158).

A token carries the last id of the previous page and a digest of the
request's filters, HMAC-signed with a key derived from the root key. A token
that was altered, forged, or replayed with different filters is rejected as
INVALID_ARGUMENT rather than silently returning another page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from m2mauth.core.errors import InvalidField, InvalidPageToken


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=HasId)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
_MAC_BYTES = 16


def page_size(requested: int) -> int:
    """0 means the default, too large is clamped, negative is invalid (AIP-158)."""
    if requested < 0:
        raise InvalidField("page_size", "must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


class PageTokenCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    @staticmethod
    def _filters_digest(kind: str, filters: dict[str, str]) -> str:
        canonical = json.dumps([kind, sorted(filters.items())], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def encode(self, kind: str, last_id: str, filters: dict[str, str]) -> str:
        payload = json.dumps(
            {"k": last_id, "f": self._filters_digest(kind, filters)}, separators=(",", ":")
        ).encode()
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def decode(self, kind: str, token: str, filters: dict[str, str]) -> str | None:
        """Return the last id the token carries, or None for an empty token."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidPageToken() from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidPageToken()
        data = json.loads(payload)
        if data.get("f") != self._filters_digest(kind, filters) or not isinstance(
            data.get("k"), str
        ):
            raise InvalidPageToken()
        return str(data["k"])


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


class Pager:
    """One List call's paging (AIP-158), for a store that lists by id.

    Ask the store for :attr:`fetch` rows after (or before) :attr:`cursor`;
    :meth:`page` keeps ``page_size`` of them and signs a token for the next
    page only if the extra row showed there is one.
    """

    def __init__(
        self,
        codec: PageTokenCodec,
        kind: str,
        filters: dict[str, str],
        requested_page_size: int,
        token: str,
    ) -> None:
        self._codec = codec
        self._kind = kind
        self._filters = filters
        self.limit = page_size(requested_page_size)
        # The last id of the previous page, or None for the first page.
        self.cursor = codec.decode(kind, token, filters)

    @property
    def fetch(self) -> int:
        """How many rows to ask for: one more than a page, to know if another follows."""
        return self.limit + 1

    def page(self, rows: Sequence[T]) -> Page[T]:
        items = list(rows[: self.limit])
        more = len(rows) > self.limit
        token = self._codec.encode(self._kind, items[-1].id, self._filters) if more else ""
        return Page(items, token)
