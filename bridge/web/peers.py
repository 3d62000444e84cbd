"""Who is on the other end of a request: address matching against configured networks, and the
client's address as the trusted reverse proxy names it.

Input: a peer address, request headers, settings.ui.trusted_proxies. Output: booleans and an
address string (never a header value that is not an IP address).
"""
from __future__ import annotations

import ipaddress


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
    """The client's address: from a trusted proxy, the last address of its X-Forwarded-For (the
    shipped nginx site sets it to the client's alone); else the peer's own. "local" for a Unix
    socket."""
    if in_networks(remote_addr, trusted):
        forwarded = headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            pass
    return remote_addr or "local"
