"""Reading a row to write it back whole, under its row lock.

An update reads the whole row and writes it back whole. Without the row held,
two units of work at READ COMMITTED (PostgreSQL) both read it as it was and
the later write undoes the earlier one: a rename undid a revocation of every
token, an admin key's rename brought a revoked key back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from m2mauth.core.interfaces import UnitOfWork
from m2mauth.core.models import Principal

Row = TypeVar("Row")


def read_for_update(
    uow: UnitOfWork,
    principal: Principal,
    row_id: str,
    visible: Callable[[UnitOfWork, Principal, str], Row],
    lock: Callable[[str], None],
) -> Row:
    """The row ``visible`` returns, held until commit and read again as it is now.

    Visible first: another tenant's row is never locked, as a wait on it would
    tell that it exists (AIP-193). ``lock`` is the unit of work's lock for the
    row's table (see UnitOfWork.lock_application).
    """
    visible(uow, principal, row_id)
    lock(row_id)
    return visible(uow, principal, row_id)
