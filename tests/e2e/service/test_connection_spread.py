"""Kept-alive connections spread over the web workers of a real `cibridge serve` (issue 19).

Linux hands a shared listening socket's connections nearly always to the same worker, and a
kept-alive connection stays with the worker that took it: a proxy's or a load generator's
connections all landed on one worker, which served them on one core while the other idled. Each
worker now takes a connection only while it holds no more than the others (bridge/service/
spread.py), and one holding more than that closes kept-alive connections after their reply
(`Connection: close`) until the others catch up.
"""
from __future__ import annotations

import os
import socket
import textwrap
import time
from pathlib import Path

import pytest

from helpers.ops import live_workers
from helpers.process import BridgeProcess

pytestmark = pytest.mark.slow

RULES = textwrap.dedent("""\
    settings:
      durability: normal
    sources:
      github: {provider: github, secrets: ["${env:GH_SECRET}"]}
    targets:
      mem: {kind: memory}
    rules:
      - name: any
        on: {repo: f110/test, branches: ["**"]}
        run: {target: mem}
    """)


def established(pid: int, port: int) -> int:
    """Connections to 127.0.0.1:`port` that process `pid` holds open (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "01" and int(local.split(":")[1], 16) == port and inode in inodes:
            count += 1
    return count


class Client:
    """A kept-alive connection that connects again when the bridge says `Connection: close`."""

    def __init__(self, port: int):
        self.port = port
        self.closed_by_server = 0
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def get(self) -> int:
        self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            assert chunk, "the bridge closed a connection without answering"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                      if k.strip().lower() == "content-length")
        while len(rest) < length:
            chunk = self.sock.recv(4096)
            assert chunk, "the bridge closed a connection in the middle of a reply"
            rest += chunk
        if any(line.lower().replace(" ", "") == "connection:close" for line in lines[1:]):
            self.sock.close()
            self.closed_by_server += 1
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return int(lines[0].split()[1])


def test_kept_alive_connections_end_up_spread_over_the_workers(tmp_path):
    bridge = BridgeProcess(tmp_path / "b", RULES, workers=2, dispatcher=False,
                           env={"GH_SECRET": "spread-secret-1"}).start()
    clients = []
    try:
        # At once, as a proxy does after a restart: the second worker may not be serving yet.
        clients = [Client(bridge.port) for _ in range(24)]
        statuses = [c.get() for c in clients]
        workers = live_workers(bridge, 2)
        deadline = time.monotonic() + 30
        counts: list[int] = []
        while time.monotonic() < deadline:
            statuses += [c.get() for c in clients]
            counts = [established(pid, bridge.port) for pid in workers]
            if sum(counts) == 24 and min(counts) >= 10:
                break
            time.sleep(0.05)
        assert set(statuses) == {200}
        assert sum(counts) == 24 and min(counts) >= 10, f"connections per worker: {counts}"
        # Once even, the workers leave the connections where they are.
        closed = sum(c.closed_by_server for c in clients)
        for _ in range(10):
            assert {c.get() for c in clients} == {200}
        assert sum(c.closed_by_server for c in clients) == closed
        # New connections go on being spread.
        clients += [Client(bridge.port) for _ in range(16)]
        for c in clients:
            c.get()
        counts = [established(pid, bridge.port) for pid in workers]
        assert sum(counts) == 40 and min(counts) >= 18, f"connections per worker: {counts}"
    finally:
        for c in clients:
            c.sock.close()
        bridge.stop()


def test_a_closed_connection_does_not_stop_the_workers_poll_loop(tmp_path):
    """A reply that closes its connection (the client asked) is closed the RFC 9112 way, write
    side first, then what the client still sends drained: in the poller, not by gunicorn's
    close_graceful, which waited for each client's FIN (up to 2 s) with the poll loop stopped.
    Four clients that never close their end then held up every other client for 8 s."""
    bridge = BridgeProcess(tmp_path / "b", RULES, workers=1, dispatcher=False,
                           env={"GH_SECRET": "spread-secret-1"}).start()
    lingering = []
    try:
        t0 = time.monotonic()
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", bridge.port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(4096)
            assert data.startswith(b"HTTP/1.1 200")
            lingering.append(s)             # never closed by the client
        other = Client(bridge.port)
        assert other.get() == 200
        # 2 s per lingering client before: 8 s in all
        assert time.monotonic() - t0 < 5.0, "the poll loop waited for the lingering clients"
        for s in lingering:                 # each was half-closed by the bridge: EOF after the reply
            s.settimeout(10)
            rest = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                rest += chunk
        other.sock.close()
    finally:
        for s in lingering:
            s.close()
        bridge.stop()
