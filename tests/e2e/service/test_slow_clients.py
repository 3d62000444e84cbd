"""Slow and idle clients against a real `cibridge serve` on 127.0.0.1 (issue 12 item 1).

Hundreds of connections sending headers or bodies a byte at a time must not stop signed
deliveries from being answered; a client that overruns `settings.header_timeout` or
`settings.body_timeout` gets 408, a body over the cap 413, and the request framing the worker
reads ahead (Content-Length, chunked, 100-continue, pipelining) still reaches the app intact.
"""
from __future__ import annotations

import resource
import socket
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from helpers.rules import GITHUB_SECRET, SECRET_ENV
from helpers.payloads import load_payload, sign_github
from helpers.process import BridgeProcess, children
from helpers.ops import live_workers

from bridge.service.reqframe import (BAD, COMPLETE, HAND_OVER, HEADERS_TOO_LARGE, NEED_MORE, TOO_LARGE,
                                     RequestFrame)

pytestmark = pytest.mark.slow

_BODY, _HEADERS = load_payload("github/push__f110-single-commit.json")
_AFTER = b'"after": "'


def rules(settings: str = "") -> str:
    return textwrap.dedent("""\
        settings:
          durability: normal
        {settings}
        sources:
          github: {{provider: github, secrets: ["${{env:GH_SECRET}}"]}}
        targets:
          mem: {{kind: memory}}
        rules:
          - name: any
            on: {{repo: f110/test, branches: ["**"]}}
            run: {{target: mem}}
        """).format(settings=textwrap.indent(settings, "  "))


def delivery() -> tuple[bytes, dict]:
    """A fresh signed push (new delivery id and `after`, so no dedupe)."""
    start = _BODY.index(_AFTER) + len(_AFTER)
    body = _BODY[:start] + uuid.uuid4().hex.encode() + uuid.uuid4().hex[:8].encode() + _BODY[start + 40:]
    headers = {**_HEADERS, "X-GitHub-Delivery": str(uuid.uuid4()), **sign_github(body, GITHUB_SECRET)}
    return body, headers


def raw_request(body: bytes, headers: dict, *, extra: str = "") -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "content-length")
    return (f"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def connections_held(pids, port: int) -> int:
    """Established TCP connections to `port` whose server end these processes hold."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    inodes.add(fd.readlink().name)
                except OSError:
                    pass
        except OSError:
            pass
    held = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
        held += local_port == port and state == "01" and f"socket:[{inode}]" in inodes
    return held


def is_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def read_reply(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes (or `timeout`)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


@pytest.fixture
def nofile():
    """Room for the attack's sockets in this process (and the bridge it starts)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1400:
        pytest.skip("RLIMIT_NOFILE too low for 600 attack connections")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_600_slow_connections_do_not_delay_50_signed_deliveries(tmp_path, nofile):
    bridge = BridgeProcess(tmp_path / "b", rules("header_timeout: 60s\nbody_timeout: 60s"),
                           env=SECRET_ENV, workers=2, dispatcher=False).start()
    attack: list[socket.socket] = []
    stop = threading.Event()
    try:
        workers = live_workers(bridge, 2)     # gunicorn forks them one at a time
        body, headers = delivery()
        for i in range(300):            # headers that never end
            s = socket.create_connection(("127.0.0.1", bridge.port))
            s.sendall(f"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ".encode())
            attack.append(s)
        for _ in range(300):            # a body that never ends
            s = socket.create_connection(("127.0.0.1", bridge.port))
            s.sendall(raw_request(body + b" " * 100_000, headers)[:len(body) // 2])
            attack.append(s)

        def trickle():                  # slow, not idle: a byte on each, twice a second
            while not stop.wait(0.5):
                for s in attack:
                    try:
                        s.send(b"x")
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        deadline = time.monotonic() + 30
        while connections_held(workers, bridge.port) < 600 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert connections_held(workers, bridge.port) >= 600, "the workers did not take all 600"

        acked, slowest = 0, 0.0
        for _ in range(50):
            body, headers = delivery()
            started = time.monotonic()
            try:
                resp = bridge.post("github", body, headers, timeout=5)
            except requests.RequestException:
                break
            took = time.monotonic() - started
            if resp.status_code != 202 or took > 1.0:
                break
            acked, slowest = acked + 1, max(slowest, took)
        print(f"\nslow clients: {acked}/50 deliveries answered 202 with 600 slow connections "
              f"open; slowest {slowest:.3f}s")
        assert acked == 50, f"{acked} of 50 answered 202 within 1 s (slowest {slowest:.3f}s)"
        still_open = sum(is_open(s) for s in attack)
        assert still_open == 600, f"only {still_open} of the 600 slow connections were still open"
    finally:
        stop.set()
        for s in attack:
            s.close()
        bridge.stop()


def test_deadlines_answer_408_and_the_framing_read_ahead_reaches_the_app(tmp_path):
    bridge = BridgeProcess(tmp_path / "b", rules("header_timeout: 2s\nbody_timeout: 2s\n"
                                                 "max_body_bytes: 200000"),
                           env=SECRET_ENV, workers=1, dispatcher=False).start()
    try:
        port = bridge.port
        body, headers = delivery()
        slow_head = socket.create_connection(("127.0.0.1", port))
        slow_head.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n")
        slow_body = socket.create_connection(("127.0.0.1", port))
        slow_body.sendall(raw_request(body, headers)[:-100])
        idle = socket.create_connection(("127.0.0.1", port))
        started = time.monotonic()
        stop = threading.Event()

        def trickle():                  # slow, never idle: the deadline is for the whole read
            while not stop.wait(0.2):
                try:
                    slow_head.send(b"X-A: b\r\n")
                    slow_body.send(b" ")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        try:
            for s in (slow_head, slow_body):
                reply = read_reply(s, 10)
                assert reply.startswith(b"HTTP/1.1 408 "), reply
        finally:
            stop.set()
        assert read_reply(idle, 10) == b""
        assert time.monotonic() - started < 10

        # Over the cap: 413 before the body is sent (100-continue) and for a chunked body.
        big = socket.create_connection(("127.0.0.1", port))
        big.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 300000\r\n\r\n")
        assert read_reply(big, 10).startswith(b"HTTP/1.1 413 ")
        chunked = socket.create_connection(("127.0.0.1", port))
        chunked.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + b"10000\r\n" + b"x" * 0x10000 + b"\r\n" * 1)
        for _ in range(3):
            chunked.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        assert read_reply(chunked, 10).startswith(b"HTTP/1.1 413 ")

        # Malformed requests: gunicorn's or the worker's 4xx, never a 5xx or the 408 of a wait.
        head = b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n"
        for raw in (b"GARBAGE\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 300_000,
                    b"GET /healthz HTTP/1.1\r\n" + b"X: a\r\n" * 200_000,
                    head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
                    head + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
                    head + b"Transfer-Encoding: gzip\r\n\r\nabc",
                    head + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                    head + b"Content-Length: 5, 5\r\n\r\nabcde",
                    head + b"X-A: b\r\n c\r\nContent-Length: 2\r\n\r\n{}",
                    b"GET /healthz HTTP/1.1\nHost: x\n\n",
                    b"GET /healthz HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nHost: x\rY: z\r\n\r\n"):
            m = socket.create_connection(("127.0.0.1", port))
            try:
                m.sendall(raw)
            except OSError:
                pass
            status = read_reply(m, 10).split(b"\r\n")[0]
            assert status[:10] == b"HTTP/1.1 4" and b" 408 " not in status, (raw[:80], status)

        # One 100 Continue (the worker's), then the app's 202.
        body, headers = delivery()
        c = socket.create_connection(("127.0.0.1", port))
        raw = raw_request(body, headers, extra="Expect: 100-continue\r\nConnection: close\r\n")
        cut = raw.index(b"\r\n\r\n") + 4
        c.sendall(raw[:cut])
        c.settimeout(5)
        assert c.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.sendall(raw[cut:])
        reply = read_reply(c, 10)
        assert reply.startswith(b"HTTP/1.1 202 ") and b"100 Continue" not in reply, reply

        # Two requests pipelined on one kept-alive connection, the second chunked.
        body1, headers1 = delivery()
        body2, headers2 = delivery()
        head2 = "".join(f"{k}: {v}\r\n" for k, v in headers2.items() if k.lower() != "content-length")
        second = (f"POST /hooks/github HTTP/1.1\r\nHost: x\r\n{head2}Transfer-Encoding: chunked\r\n"
                  "Connection: close\r\n\r\n").encode()
        second += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body2[:700], body2[700:])) + b"0\r\n\r\n"
        p = socket.create_connection(("127.0.0.1", port))
        p.sendall(raw_request(body1, headers1) + second)
        reply = read_reply(p, 10)
        assert reply.count(b"HTTP/1.1 202 ") == 2, reply
        assert bridge.post("github", *delivery()).status_code == 202
    finally:
        bridge.stop()


@pytest.mark.parametrize("data, state, end", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", NEED_MORE, None),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next", COMPLETE, 27),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", NEED_MORE, None),
    (b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nabcdeGET", COMPLETE, 43),
    (b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", TOO_LARGE, None),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HAND_OVER, None),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", HAND_OVER, None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", HAND_OVER, None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", HAND_OVER, None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", NEED_MORE, None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nX", COMPLETE, 60),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n\r\n", COMPLETE, 58),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n", TOO_LARGE, None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", BAD, None),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", BAD, None),
    (b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 200, HEADERS_TOO_LARGE, None),
    (b"GET / HTTP/1.1\r\nA: " + b"b" * 300, HEADERS_TOO_LARGE, None),
    (b"GET / HTTP/1.1\nHost: x\n\n", HAND_OVER, None),
    (b"GET / HTTP/1.1\r\nHost: x\n\r\n", HAND_OVER, None),
    (b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\n", HAND_OVER, None),
])
def test_request_frame_finds_where_a_request_ends(data, state, end):
    frame = RequestFrame(max_header=1000, max_body=10, max_line=200)
    assert frame.feed(data) == state
    if end is not None:
        assert frame.end == end
    # Byte by byte, it reaches the same answer.
    frame, got = RequestFrame(max_header=1000, max_body=10, max_line=200), NEED_MORE
    for i in range(1, len(data) + 1):
        got = frame.feed(data[:i])
        if got != NEED_MORE:
            break
    assert got == state and (end is None or frame.end == end)


def test_read_timeouts_are_settings_with_defaults(tmp_path):
    from bridge.config.load import load_config
    from bridge.errors import ConfigError
    from bridge.service.webworker import worker_class

    path = tmp_path / "rules.yaml"
    path.write_text(rules(), encoding="utf-8")
    defaults = load_config(path, environ=SECRET_ENV).settings
    assert (defaults.header_timeout, defaults.body_timeout) == (10.0, 30.0)
    path.write_text(rules("header_timeout: 5s\nbody_timeout: 2m"), encoding="utf-8")
    worker = worker_class(load_config(path, environ=SECRET_ENV).settings)
    assert (worker.header_timeout, worker.body_timeout, worker.max_body) == (5.0, 120.0, 25 * 2**20)
    path.write_text(rules("header_timeout: 0\nbody_timeout: soon"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=SECRET_ENV)
    assert [p.split(": ", 1)[1] for p in info.value.problems] == [
        "settings.header_timeout must be more than 0 and at most 1h",
        "settings.body_timeout: 'soon' is not a duration (use e.g. 5s, 10m, 24h, 30d)"]
