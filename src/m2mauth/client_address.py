"""Who is calling: the client's address, from the socket or from trusted proxies.

``X-Forwarded-For`` can be written by anyone, so it is read only when the
socket's peer is a proxy the operator listed (``--trusted-proxies``), and
then from the right: each trusted proxy appended the address it saw, and the
first address from the right that is not a trusted proxy is the client
(what a proxy in front could not have been lied to about).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """ "10.0.0.0/8, 192.0.2.7" -> networks; ValueError naming a bad entry."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an address or a network such as 10.0.0.0/8"
            ) from None
    return tuple(networks)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: ``peer``, unless it is a trusted proxy that said who."""
    if not trusted or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                # Garbage where an address should be: the last proxy is all we know.
                return peer
    return hops[0] if hops else peer
