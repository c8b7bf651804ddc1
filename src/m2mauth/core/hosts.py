"""Which hosts are this machine's own."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name, an address, or an IPv6 address in brackets) is
    reachable only from this machine. A name other than localhost counts as
    public: what it resolves to may change."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
