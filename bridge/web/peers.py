"""Who is on the other end of a request: address matching against configured networks, and the
client's address as the trusted reverse proxy names it.

Input: a peer address, request headers, settings.ui.trusted_proxies. Output: booleans and an
address string (never a header value that is not an IP address).
"""
from __future__ import annotations

import ipaddress

#: X-Forwarded-For entries read at most (from the right): a chain of proxies is short.
_MAX_HOPS = 16


def in_networks(addr: str | None, networks) -> bool:
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    for net in networks:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_address(remote_addr: str | None, headers, trusted) -> str:
    """The client's address: from a trusted proxy, the nearest address of its X-Forwarded-For
    that is not a trusted proxy too (read from the right: what a client wrote itself, left of
    what the first proxy appended, counts for nothing; the shipped nginx site sends the client's
    alone); else the peer's own. "local" for a Unix socket."""
    address = remote_addr
    if in_networks(remote_addr, trusted):
        hops = headers.get("X-Forwarded-For", "").split(",")
        for hop in reversed(hops[-_MAX_HOPS:]):
            try:
                address = str(ipaddress.ip_address(hop.strip()))
            except ValueError:
                break          # not an address: the proxies' chain ends here
            if not in_networks(address, trusted):
                break
    return address or "local"
