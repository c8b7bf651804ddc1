"""Who is calling: X-Forwarded-For only from proxies the operator trusts, read from the right."""

from __future__ import annotations

import re

import pytest

from m2mauth.client_address import client_address, parse_networks

TRUSTED = parse_networks("10.0.0.0/8, 192.0.2.7")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # No trusted proxy in front: the socket's address, whatever the header says.
        ("198.51.100.9", "1.2.3.4", "198.51.100.9"),
        ("198.51.100.9", None, "198.51.100.9"),
        # Behind a trusted proxy: the last address it was told about.
        ("10.1.2.3", "203.0.113.5", "203.0.113.5"),
        # A client lying in its own header cannot hide: the proxy appended the truth.
        ("10.1.2.3", "1.1.1.1, 203.0.113.5", "203.0.113.5"),
        # Two trusted hops: skip both.
        ("192.0.2.7", "203.0.113.5, 10.9.9.9", "203.0.113.5"),
        # Garbage after the last proxy: that proxy is all we know.
        ("10.1.2.3", "not-an-address", "10.1.2.3"),
        ("10.1.2.3", "", "10.1.2.3"),
        # Only trusted hops: the first of them.
        ("10.1.2.3", "10.0.0.1", "10.0.0.1"),
    ],
)
def test_the_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert client_address("10.1.2.3", "203.0.113.5", ()) == "10.1.2.3"


def test_a_bad_entry_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33'")):
        parse_networks("10.0.0.0/8, 10.0.0.0/33")
    assert parse_networks("") == ()
    assert [str(n) for n in parse_networks(" ::1 , 127.0.0.0/8 ")] == ["::1/128", "127.0.0.0/8"]
