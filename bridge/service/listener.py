"""Process stage: the web port, bound by `cibridge serve` / `cibridge web` itself before gunicorn starts.

Input: a bind address (HOST:PORT, [IPv6]:PORT, unix:PATH, as gunicorn spells them). Output: a
listening socket handed to gunicorn as `--bind fd://N`, so a busy port is a one-line error at once,
the port stays open while `cibridge serve` restarts its web child, and readiness is probed through
this very socket (nobody else can listen on an address we hold).
"""
from __future__ import annotations

import errno
import os
import socket
import stat

from bridge.errors import BridgeError

BACKLOG = 2048   # gunicorn's default: connections wait here while the web child restarts


class BindError(BridgeError):
    """The address cannot be listened on; str() is the one line to print."""


def _parse(bind: str):
    from gunicorn.util import is_ipv6, parse_address
    try:
        addr = parse_address(bind)
    except (RuntimeError, ValueError) as exc:
        raise BindError(f"cannot listen on {bind}: {exc}") from None
    if isinstance(addr, int):
        raise BindError(f"cannot listen on {bind}: an inherited fd:// is not an address to bind")
    if isinstance(addr, str):
        return socket.AF_UNIX, addr
    return (socket.AF_INET6 if is_ipv6(addr[0]) else socket.AF_INET), addr


class Listener:
    """One listening socket of ours. `gunicorn_bind()` is what the web process is given."""

    def __init__(self, bind: str, backlog: int = BACKLOG):
        self.bind = bind
        self.backlog = backlog
        self.family, self.address = _parse(bind)
        self.sock = self._listen()
        self._inode = os.stat(self.address).st_ino if self.family == socket.AF_UNIX else None

    def _listen(self) -> socket.socket:
        if self.family == socket.AF_UNIX:
            self._clear_stale_unix_socket()
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            if self.family != socket.AF_UNIX:
                # As gunicorn: restart at once over connections in TIME_WAIT. Linux never lets
                # this share a port with another listener (that would take SO_REUSEPORT).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(self.address)
            else:
                old = os.umask(0)   # gunicorn's default umask for its unix socket: nginx connects
                try:
                    sock.bind(self.address)
                finally:
                    os.umask(old)
            sock.listen(self.backlog)
        except OSError as exc:   # socket.gaierror (an unknown host name) too
            sock.close()
            raise BindError(f"cannot listen on {self.bind}: {_why(exc)}") from None
        except (OverflowError, UnicodeError) as exc:   # a port over 65535, a host name too long
            sock.close()
            raise BindError(f"cannot listen on {self.bind}: {exc}") from None
        return sock

    def _clear_stale_unix_socket(self) -> None:
        path = self.address
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise BindError(f"cannot listen on {self.bind}: {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)   # nobody listens there: left over from a process that died
            return
        finally:
            probe.close()
        raise BindError(f"cannot listen on {self.bind}: {_why(OSError(errno.EADDRINUSE, ''))}")

    # -- what the web process is given ------------------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno()

    def gunicorn_bind(self) -> str:
        return f"fd://{self.fileno()}"

    def detach(self) -> str:
        """Hand the socket over to gunicorn in this process (it closes the fd itself)."""
        fd = self.sock.detach()
        return f"fd://{fd}"

    @property
    def url(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.address}"
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if self.family == socket.AF_INET6 else f"http://{host}:{port}"

    # -- the supervisor's side --------------------------------------------------------------

    def ensure(self) -> None:
        """Before a web child (re)starts: a unix socket whose path is gone (a gunicorn that
        stopped cleanly unlinks it) is bound again. A TCP port never goes away while we hold it."""
        if self.family != socket.AF_UNIX:
            return
        try:
            if os.stat(self.address).st_ino == self._inode:
                return
        except FileNotFoundError:
            pass
        self.sock.close()
        self.sock = self._listen()
        self._inode = os.stat(self.address).st_ino

    def probe(self, timeout: float = 2.0) -> bool:
        """GET /healthz through our own address; True on a 200. Only a process holding this
        socket (our gunicorn) can answer: it is bound without SO_REUSEPORT."""
        if self.family == socket.AF_UNIX:
            target = self.address
        else:
            host, port = self.sock.getsockname()[:2]
            wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
            target = (wildcard.get(host, host), port)
        conn = socket.socket(self.family, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(target)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            head = b""
            while b"\r\n" not in head and len(head) < 1024:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                head += chunk
            return head.startswith(b"HTTP/1.") and head.split(b" ", 2)[1:2] == [b"200"]
        except OSError:
            return False
        finally:
            conn.close()

    def close(self) -> None:
        """Stop listening. A unix socket's path stays: gunicorn removes it when it stops, and a
        path nobody listens on is cleared at the next start."""
        if self.sock.fileno() != -1:
            self.sock.close()


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (another bridge, or another program, listens there)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this host has no such address"
    return exc.strerror or str(exc)
