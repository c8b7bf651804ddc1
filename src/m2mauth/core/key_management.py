"""Managing signing keys through the API: list them, rotate them (environment key only)."""

from __future__ import annotations

from datetime import datetime

from m2mauth.core.errors import InvalidField
from m2mauth.core.models import Principal, SigningKey, SigningKeyState
from m2mauth.core.pagination import Page, Pager, PageTokenCodec
from m2mauth.core.permissions import Permission, require_environment
from m2mauth.core.signing_keys import ALGORITHMS, SigningKeyRing


class SigningKeyAdmin:
    def __init__(self, ring: SigningKeyRing, pages: PageTokenCodec) -> None:
        self._ring = ring
        self._pages = pages

    def list(
        self, principal: Principal, requested_page_size: int, token: str, show_retired: bool
    ) -> Page[SigningKey]:
        """Newest first (AIP-158 pages; the token carries the last id shown)."""
        require_environment(principal, Permission.SIGNING_KEYS_READ, "list signing keys")
        filters = {"retired": "1" if show_retired else "0"}
        pager = Pager(self._pages, "signing_keys", filters, requested_page_size, token)
        # Few keys exist (two live ones plus those rotated out), so listing
        # them all and paging in memory is simpler than a keyset query.
        rows = [
            k
            for k in self._ring.list_keys()
            if (show_retired or k.state is not SigningKeyState.RETIRED)
            and (pager.cursor is None or k.id < pager.cursor)
        ]
        return pager.page(rows)

    def check_may_rotate(self, principal: Principal) -> None:
        """PermissionDenied unless ``principal`` may rotate (an environment key
        with signing_keys.write): to ask before offering the rotation."""
        require_environment(principal, Permission.SIGNING_KEYS_WRITE, "rotate signing keys")

    def rotate(
        self, principal: Principal, algorithm: str | None, *, now: bool = False
    ) -> tuple[SigningKey, SigningKey, datetime | None]:
        """Rotate once every verifier can hold the NEXT key (publish first, promote
        after), or with ``now`` at once; (current, next, scheduled promotion time
        or None if rotated now). See SigningKeyRing.request_rotation."""
        self.check_may_rotate(principal)
        if algorithm is not None and algorithm not in ALGORITHMS:
            raise InvalidField("algorithm", f"must be one of {', '.join(ALGORITHMS)}")
        if now:
            current, nxt = self._ring.rotate(algorithm, actor=principal.admin_key_id)
            return current, nxt, None
        return self._ring.request_rotation(algorithm, actor=principal.admin_key_id)
