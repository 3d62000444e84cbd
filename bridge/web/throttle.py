"""The brake on guessing settings.admin_token: a few wrong tokens a minute per client address
(through the login form and the bearer header alike), then 429 until the oldest of them is a
minute old. In-process: each web worker counts its own.

Input: the client's address (web/peers.py: the trusted proxy's X-Forwarded-For, else the peer),
a clock. Output: how long that client must wait before its next try (0: go ahead).
"""
from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque

#: Wrong admin tokens allowed per client in WINDOW seconds; the next try waits.
FAILURES = 5
WINDOW = 60.0
#: Clients remembered per worker (the least recently failed are forgotten first).
MAX_CLIENTS = 10_000


def client_key(address: str) -> str:
    """The client an address belongs to: an IPv6 address by its /64 (one host's share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class TokenBrake:
    """Wrong admin tokens per client in a sliding window of `window` seconds."""

    def __init__(self, failures: int = FAILURES, window: float = WINDOW, *,
                 clock=time.monotonic, max_clients: int = MAX_CLIENTS):
        self.failures, self.window, self.max_clients = failures, window, max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._failed: OrderedDict[str, deque] = OrderedDict()

    def wait(self, address: str) -> int:
        """Seconds before this client may try again (0: now)."""
        key, now = client_key(address), self._clock()
        with self._lock:
            times = self._failed.get(key)
            if times is None:
                return 0
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failed[key]
                return 0
            if len(times) < self.failures:
                return 0
            return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, address: str) -> None:
        key, now = client_key(address), self._clock()
        with self._lock:
            times = self._failed.pop(key, None) or deque(maxlen=self.failures)
            times.append(now)
            self._failed[key] = times             # the most recent at the end
            while len(self._failed) > self.max_clients:
                self._failed.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failed.pop(client_key(address), None)
