"""Credentials, ids, root keys and page tokens: the security-relevant basics."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from m2mauth.core import ids
from m2mauth.core.credentials import CLIENT_SECRET_PREFIX, CredentialHasher
from m2mauth.core.errors import InvalidField, InvalidPageToken
from m2mauth.core.pagination import PageTokenCodec, page_size
from m2mauth.core.root_key import (
    DerivedKeys,
    RootKeyError,
    load_or_create_root_key_file,
    parse_root_key,
)


def test_secrets_have_256_bits_a_prefix_and_a_keyed_hash() -> None:
    hasher = CredentialHasher(secrets.token_bytes(32))
    secret = hasher.generate(CLIENT_SECRET_PREFIX)
    body = secret.removeprefix(CLIENT_SECRET_PREFIX)
    assert secret.startswith("m2m_cs_")
    assert len(base64.urlsafe_b64decode(body + "=")) == 32
    stored = hasher.hash(secret)
    assert hasher.matches(secret, stored)
    assert not hasher.matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), stored)
    # Keyed: another server key gives another hash, so a stolen table alone is useless.
    assert CredentialHasher(secrets.token_bytes(32)).hash(secret) != stored
    assert hasher.hint(secret) == secret[-4:]


def test_ids_are_prefixed_sortable_and_checked() -> None:
    early = ids.new_id(ids.ORGANIZATION, now_ms=1_000)
    late = ids.new_id(ids.ORGANIZATION, now_ms=2_000)
    assert early < late
    assert ids.is_id(early, "org")
    assert not ids.is_id(early, "app")
    assert not ids.is_id("org_short", "org")
    assert not ids.is_id("org_" + "U" * 26, "org")  # U is not Crockford base32


def test_root_key_parsing_and_derivation(tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    assert parse_root_key(base64.b64encode(raw).decode()) == raw
    assert parse_root_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    with pytest.raises(RootKeyError):
        parse_root_key("dG9vIHNob3J0")
    with pytest.raises(RootKeyError):
        parse_root_key("not base64 at all!!")
    keys = DerivedKeys.from_root(raw)
    assert len({keys.key_encryption, keys.credential_hash, keys.page_token}) == 3

    path = tmp_path / "var" / "root.key"
    created, was_created = load_or_create_root_key_file(path)
    assert was_created
    assert path.stat().st_mode & 0o777 == 0o600
    again, was_created = load_or_create_root_key_file(path)
    assert again == created
    assert not was_created


def test_page_size_rules() -> None:
    assert page_size(0) == 50
    assert page_size(7) == 7
    assert page_size(10_000) == 100
    with pytest.raises(InvalidField):
        page_size(-1)


def test_page_tokens_round_trip_and_reject_tampering() -> None:
    codec = PageTokenCodec(secrets.token_bytes(32))
    token = codec.encode("apps", "app_X", {"org": "org_1"})
    assert codec.decode("apps", token, {"org": "org_1"}) == "app_X"
    assert codec.decode("apps", "", {"org": "org_1"}) is None
    for bad_kind, bad_filters in (("orgs", {"org": "org_1"}), ("apps", {"org": "org_2"})):
        with pytest.raises(InvalidPageToken):
            codec.decode(bad_kind, token, bad_filters)
    other = PageTokenCodec(secrets.token_bytes(32))
    with pytest.raises(InvalidPageToken):
        other.decode("apps", token, {"org": "org_1"})
    for garbage in ("%%%", "AAAA", token[:-3]):
        with pytest.raises(InvalidPageToken):
            codec.decode("apps", garbage, {"org": "org_1"})
