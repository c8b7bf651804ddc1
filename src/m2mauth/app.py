"""Bootstrap: the one place that wires settings -> store -> core -> transports."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from m2mauth.config import Settings
from m2mauth.core.admin_keys import AdminKeys
from m2mauth.core.applications import Applications
from m2mauth.core.audit import AuditReader
from m2mauth.core.clock import Clock, utc_now
from m2mauth.core.credentials import CredentialHasher
from m2mauth.core.interfaces import Store
from m2mauth.core.organizations import Organizations
from m2mauth.core.pagination import PageTokenCodec
from m2mauth.core.root_key import (
    DerivedKeys,
    load_or_create_root_key_file,
    parse_root_key,
)
from m2mauth.core.tokens import TokenComponents, build_token_components

log = logging.getLogger("m2mauth")


@dataclass
class Container:
    """Everything the transports need, built once per process."""

    settings: Settings
    store: Store
    clock: Clock
    keys: DerivedKeys
    hasher: CredentialHasher
    pages: PageTokenCodec
    admin_keys: AdminKeys
    organizations: Organizations
    applications: Applications
    audit: AuditReader
    tokens: TokenComponents


def load_root_key(settings: Settings) -> tuple[bytes, bool]:
    """The root key from settings; (key, created_now)."""
    if settings.root_key:
        return parse_root_key(settings.root_key), False
    path = Path(settings.root_key_file)
    if settings.dev:
        return load_or_create_root_key_file(path)
    return parse_root_key(path.read_text()), False


def build_container(
    settings: Settings, store: Store, root_key: bytes, clock: Clock = utc_now
) -> Container:
    keys = DerivedKeys.from_root(root_key)
    hasher = CredentialHasher(keys.credential_hash)
    pages = PageTokenCodec(keys.page_token)
    return Container(
        settings=settings,
        store=store,
        clock=clock,
        keys=keys,
        hasher=hasher,
        pages=pages,
        admin_keys=AdminKeys(store, hasher, clock),
        organizations=Organizations(store, pages, clock),
        applications=Applications(
            store, pages, hasher, clock, max_secrets=settings.max_client_secrets
        ),
        audit=AuditReader(store, pages),
        tokens=build_token_components(settings, store, keys, hasher, clock),
    )
