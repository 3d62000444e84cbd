"""Free TCP ports on 127.0.0.1 for the servers a test starts (bridges, stand-ins, git daemon):
asks the kernel for one and hands back its number."""
from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
