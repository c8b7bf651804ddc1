"""The replay record of client assertions (RFC 7523 section 3 item 7: the server
"MAY ensure that JWTs are not replayed by maintaining the set of used jti
values for the length of time for which the JWT would be considered valid").

It lives in the store, so every process and replica on one database refuses a
second use of an assertion whichever of them saw the first; the periodic
maintenance forgets what has expired.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from m2mauth.core.clock import Clock
from m2mauth.core.interfaces import Store


def assertion_key(client_id: str, jti: str) -> str:
    """What the store remembers of a used assertion: a fixed-size digest of the
    client and the jti, never the caller's text itself."""
    return hashlib.sha256(f"{client_id}\x00{jti}".encode()).hexdigest()


class UsedAssertions:
    """Used client assertions, in the store."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def first_use(self, client_id: str, jti: str, until: datetime) -> bool:
        """Remember (client_id, jti) until ``until``; False if it was used before."""
        with self._store.unit_of_work() as uow:
            return uow.use_client_assertion(assertion_key(client_id, jti), until)

    def purge(self) -> int:
        """Forget assertions that can no longer be accepted (their ``until`` is past)."""
        with self._store.unit_of_work() as uow:
            return uow.purge_client_assertions(self._clock())
