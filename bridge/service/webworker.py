"""Web stage, before the app: the gunicorn worker that reads each whole request before a thread sees it.

Input: client connections on the bridge's listening sockets. Output: complete HTTP/1.1 requests
(headers within `settings.header_timeout`, body up to `settings.max_body_bytes` within
`settings.body_timeout`) handed to gunicorn's gthread pool; 408 or 413 to a client that does not
get there. Slow or idle clients wait in the worker's poller and hold no thread, like behind nginx.
"""
from __future__ import annotations

import errno
import resource
import select
import selectors
import socket
import time
from functools import partial

from gunicorn.http.unreader import Unreader
from gunicorn.workers.gthread import TConn, ThreadWorker

from bridge.service.reqframe import (BAD, HAND_OVER, HEADERS_TOO_LARGE, NEED_MORE, TOO_LARGE,
                                     RequestFrame)

#: What a header section may weigh beyond gunicorn's own limits (request line, field count and
#: size) before the worker answers 431 itself.
_HEADER_SLACK = 4096
_RECV = 256 * 1024
#: After a 408/413/503, how long (and how many bytes) a client may go on sending before the
#: connection is closed under it.
_LINGER, _LINGER_BYTES = 2.0, 4 * 2**20
#: What this worker overrides or calls in gunicorn's gthread worker (gunicorn 27).
_GTHREAD_HOOKS = ("accept", "set_accept_enabled", "on_client_socket_readable", "enqueue_req",
                  "finish_request", "murder_pending", "handle", "handle_request", "_keepalive_after")
#: A worker leaving connections to others takes them itself after this many turns of its poll
#: loop (one every 20 ms while it waits) that found them still queued in the kernel.
STUCK_TURNS = 3
#: A stopping worker that still holds connections this many seconds on says which (once).
SLOW_STOP = 8.0
#: What the spreading of connections over the workers overrides there.
_SPREAD_HOOKS = ("set_accept_enabled", "wait_for_and_dispatch_events", "notify")


class BufferedUnreader(Unreader):
    """The request bytes the poller read, and nothing more: a worker thread never waits on a
    client. A request gunicorn finds shorter than the poller did ends as a premature close."""

    def chunk(self, size_hint=None):
        return b""


def raise_fd_limit(want: int) -> None:
    """Lift this process's soft RLIMIT_NOFILE to `want` (at most the hard limit): each open
    connection is a file descriptor, and systemd's default soft limit is 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def _reply(status: str, text: str) -> bytes:
    body = ('{"error": "%s"}\n' % text).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class ReadAheadWorker(ThreadWorker):
    """gthread, except that the poller thread reads every request whole (with deadlines) before
    a pool thread serves it. Configured by subclassing (see `worker_class`)."""

    header_timeout = 10.0
    body_timeout = 30.0
    max_body = 25 * 2**20
    #: The workers' shared connection counts (spread.py), mapped by the master; None: not spread.
    spread = None

    def init_process(self):
        cfg = self.cfg
        self.readahead = not (cfg.is_ssl or getattr(cfg, "http_protocols", ["h1"]) != ["h1"]
                              or getattr(cfg, "protocol", "http") != "http"
                              or cfg.proxy_protocol not in ("off", False, None))
        if not self.readahead:
            self.log.warning("TLS, HTTP/2, uwsgi or PROXY protocol in gunicorn: requests are read "
                             "in worker threads, without the bridge's read deadlines")
        elif not all(hasattr(ThreadWorker, name) for name in _GTHREAD_HOOKS):
            self.readahead = False
            self.log.error("this gunicorn's gthread worker lacks %s: requests are read in worker "
                           "threads, without the bridge's read deadlines (install gunicorn>=27)",
                           ", ".join(n for n in _GTHREAD_HOOKS if not hasattr(ThreadWorker, n)))
        self.reading: dict = {}     # connections being read -> None (ordered set)
        self.lingering: dict = {}   # connections refused, closing
        self.buffered = 0           # bytes held for them
        # Memory for requests being read, across this worker's connections.
        self.budget = max(256 * 2**20, 2 * self.max_body)
        self.max_header = max(65536, cfg.limit_request_line + cfg.limit_request_fields
                              * (cfg.limit_request_field_size + 2) + _HEADER_SLACK)
        limits = (cfg.limit_request_line, cfg.limit_request_field_size)     # 0: no limit
        self.max_line = max(limits) + _HEADER_SLACK if all(limits) else None
        self.next_expiry = 0.0
        self.accept_paused_until = 0.0
        self.stopping_since = None      # when the poll loop first found the worker stopping
        self.stop_reported = False
        self.spread_waiting = False     # not accepting while other workers hold fewer connections
        self.spread_stuck = 0           # turns of the loop that found connections left queued
        if self.spread is not None and all(hasattr(ThreadWorker, n) for n in _SPREAD_HOOKS):
            self.spread.slot = getattr(self, "spread_slot", None)     # the master's pre_fork gave it
        else:
            self.spread = None
        raise_fd_limit(cfg.worker_connections + 256)
        super().init_process()

    # -- connections in, requests out ------------------------------------------------------

    def accept(self, listener):
        if not self.readahead:
            return super().accept(listener)
        try:
            sock, addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.log.warning("cannot accept a connection (%s); pausing for a second", exc)
                self.accept_paused_until = time.monotonic() + 1.0
                self.set_accept_enabled(False)
            elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.read_request(TConn(self.cfg, sock, addr, listener.getsockname()))

    def set_accept_enabled(self, enabled):
        if enabled and time.monotonic() < self.accept_paused_until:
            enabled = False
        self.spread_waiting = enabled and self._leaves_to_others()
        super().set_accept_enabled(enabled and not self.spread_waiting)
        if not enabled and not self.alive and self.spread is not None:
            self.spread.publish(None)      # stopping: nobody is to wait for this worker now

    # -- connections spread over the workers (spread.py) ---------------------------------------

    def notify(self):
        """Each turn of the poll loop: the heartbeat, and this worker's connections published;
        it stops accepting while another worker holds fewer (the loop turns it back on)."""
        super().notify()
        spread = self.spread
        if spread is None:
            return
        takes = (self.alive and self.nr_conns < self.worker_connections
                 and time.monotonic() >= self.accept_paused_until)
        spread.publish(self.nr_conns if takes else None)
        if not takes:
            return
        fair = spread.fair(self.nr_conns)
        if fair:
            self.spread_stuck = 0
        else:
            # Connections still queued in the kernel while another worker should take them: that
            # one is stuck (its poll loop blocked, or on its way out). Counted per turn of the loop.
            try:
                queued = bool(select.select(self.sockets, [], [], 0)[0])
            except (OSError, ValueError):
                queued = False
            self.spread_stuck = self.spread_stuck + 1 if queued else 0
        if not fair and self.spread_stuck < STUCK_TURNS and getattr(self, "_accepting", False):
            super().set_accept_enabled(False)
            self.spread_waiting = True

    def _leaves_to_others(self) -> bool:
        """Whether this worker leaves new connections to the others now: they hold fewer (and
        have not left them waiting in the kernel's queue for STUCK_TURNS turns of this loop)."""
        return (self.spread is not None and not self.spread.fair(self.nr_conns)
                and self.spread_stuck < STUCK_TURNS)

    def wait_for_and_dispatch_events(self, timeout):
        # Waiting for the others to catch up: look again soon, not in a second, or a connection
        # could wait in the kernel's queue while every worker thinks another should take it.
        return super().wait_for_and_dispatch_events(min(timeout, 0.02) if self.spread_waiting
                                                    else timeout)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection has its next request coming: read it here too."""
        if not self.readahead:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.read_request(conn)
        return None

    def read_request(self, conn, data: bytes = b""):
        """Read one request on `conn` in the poller, starting with `data` (bytes a client
        pipelined behind its previous request)."""
        conn.ra_buf = bytearray(data)
        conn.ra_frame = RequestFrame(self.max_header, self.max_body, self.max_line)
        conn.ra_deadline = time.monotonic() + self.header_timeout
        conn.ra_in_body = conn.ra_truncated = conn.ra_continued = False
        conn.sock.setblocking(False)
        self.buffered += len(data)
        self.reading[conn] = None
        conn.ra_polled = False
        if not (data and self.advance(conn)):
            self.on_readable(conn, conn.sock)    # the request is often all there already
        if conn in self.reading:
            conn.ra_polled = True
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_readable, conn))

    def on_readable(self, conn, _sock):
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:                         # the client closed or reset the connection
            self.refuse(conn, None)
            return
        if self.buffered + len(data) > self.budget:
            self.log.warning("requests being read hold %d bytes; refusing one more (503)",
                             self.buffered)
            self.refuse(conn, _reply("503 Service Unavailable", "the bridge is busy reading "
                                     "other requests; please retry"))
            return
        conn.ra_buf += data
        self.buffered += len(data)
        self.advance(conn)

    def advance(self, conn) -> bool:
        """Hand `conn` on if its request is whole (or refuse it); True when it left the poller."""
        frame = conn.ra_frame
        state = frame.feed(conn.ra_buf)
        if state == NEED_MORE:
            if frame.header_end is not None and not conn.ra_in_body:
                conn.ra_in_body = True
                conn.ra_deadline = time.monotonic() + self.body_timeout
                if frame.expects_continue:
                    conn.ra_continued = True
                    self.send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        if state == BAD:
            self.refuse(conn, _reply("400 Bad Request", "malformed chunked body"))
            return True
        if state == HEADERS_TOO_LARGE:
            self.refuse(conn, _reply("431 Request Header Fields Too Large", "request line or "
                                     "headers over gunicorn's limit_request_* settings"))
            return True
        if state == TOO_LARGE:
            self.log.warning("refused: a request body over the %d-byte cap (settings."
                             "max_body_bytes) from %s", self.max_body, _peer(conn))
            self.refuse(conn, _reply("413 Content Too Large", f"body is over the "
                                     f"{self.max_body}-byte cap"))
            return True
        self.leave(conn)
        conn.ra_truncated = state == HAND_OVER
        conn.ra_pending = bytes(conn.ra_buf)
        conn.ra_buf = None
        conn.data_ready = True
        self.enqueue_req(conn)
        return True

    # -- deadlines -------------------------------------------------------------------------

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        if not self.alive:
            self.report_slow_stop(now)
        if not (self.reading or self.lingering) or now < self.next_expiry:
            return
        self.next_expiry = now + 0.2
        for conn in [c for c in self.lingering if c.ra_deadline <= now]:
            self.end_linger(conn)
        if not self.alive:                   # stopping: a few seconds for requests under way
            for conn in self.reading:
                conn.ra_deadline = min(conn.ra_deadline, now + (5.0 if conn.ra_in_body else _LINGER))
        for conn in [c for c in self.reading if c.ra_deadline <= now]:
            what = "body" if conn.ra_in_body else "request headers"
            self.log.info("closed a connection from %s: its %s did not arrive within %ss (408)",
                          _peer(conn), what,
                          self.body_timeout if conn.ra_in_body else self.header_timeout)
            self.refuse(conn, _reply("408 Request Timeout", f"the {what} did not arrive in time")
                        if conn.ra_buf else None)

    def report_slow_stop(self, now: float) -> None:
        """Once, when a stopping worker still holds connections SLOW_STOP seconds on: which
        kinds (gunicorn waits for them up to its graceful_timeout, then kills the worker)."""
        if self.stopping_since is None:
            self.stopping_since = now
        elif not self.stop_reported and now - self.stopping_since >= SLOW_STOP and self.nr_conns > 0:
            self.stop_reported = True
            kept, pending = len(self.keepalived_conns), len(self.pending_conns)
            self.log.warning(
                "stopping: %d connection(s) still open after %gs: %d being read, %d closing, "
                "%d kept alive, %d waiting, %d in a thread", self.nr_conns, SLOW_STOP,
                len(self.reading), len(self.lingering), kept, pending,
                self.nr_conns - len(self.reading) - len(self.lingering) - kept - pending)

    def leave(self, conn):
        del self.reading[conn]
        self.buffered -= len(conn.ra_buf)
        if conn.ra_polled:
            self.poller.unregister(conn.sock)

    def refuse(self, conn, reply: bytes | None):
        """Close `conn`, after `reply` if one is given: then as HTTP/1.1 asks (RFC 9112 9.6),
        the write side first, reading and dropping what the client still sends for a moment,
        so that the kernel does not reset the connection and lose the reply."""
        self.leave(conn)
        conn.ra_buf = None
        if reply:
            self.send_quietly(conn, reply)
            self.close_softly(conn)
            return
        self.drop(conn)

    def drop(self, conn):
        """Close `conn` now; it no longer counts among this worker's connections."""
        self.nr_conns -= 1
        conn.close()

    def close_softly(self, conn):
        """Close `conn` as RFC 9112 9.6 asks (the write side first, then what the client still
        sends drained for a moment) in the poller: gunicorn's close_graceful waits for the
        client's FIN, up to 2 s, with the whole poll loop stopped."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.drop(conn)
            return
        conn.sock.setblocking(False)
        conn.ra_deadline, conn.ra_drained = time.monotonic() + _LINGER, 0
        self.lingering[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.drain, conn))

    def drain(self, conn, _sock):
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.ra_drained += len(data)
        if not data or conn.ra_drained > _LINGER_BYTES:
            self.end_linger(conn)

    def end_linger(self, conn):
        del self.lingering[conn]
        self.poller.unregister(conn.sock)
        self.drop(conn)

    @staticmethod
    def send_quietly(conn, data: bytes):
        try:
            conn.sock.send(data)          # non-blocking, best effort: a few hundred bytes
        except OSError:
            pass

    # -- in the pool thread ----------------------------------------------------------------

    def handle(self, conn):
        if self.readahead:
            conn.init()
            if not isinstance(conn.parser.unreader, BufferedUnreader):
                conn.parser.unreader = BufferedUnreader()
            conn.parser.unreader.unread(conn.ra_pending)
            conn.ra_pending = b""
        return super().handle(conn)

    def handle_request(self, req, conn):
        if self.spread is not None and self.alive and self.spread.crowded(self.nr_conns):
            req.must_close = True      # the reply says Connection: close; see Spread.crowded
        if self.readahead:
            if conn.ra_continued:
                req._expected_100_continue = False   # the poller has answered it
            # A client that does not read its reply holds the thread this long at most.
            conn.sock.settimeout(self.body_timeout)
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn, keepalive):
        if self.readahead and conn.ra_truncated:
            return False                          # where the next request starts is unknown
        return super()._keepalive_after(conn, keepalive)

    def finish_request(self, conn, fs):
        """Bytes a client pipelined behind a kept-alive request are read in the poller too, and
        a connection the reply closed (the client asked, or `Connection: close` from a crowded
        worker) is closed without stopping the poll loop."""
        if self.readahead and not fs.cancelled() and fs.exception() is None:
            result = fs.result()
            if result is True:
                leftover = conn.parser.unreader.take_buffered()
                if leftover:
                    self.read_request(conn, leftover)
                    return
            elif result is False:
                self.close_softly(conn)
                return
        super().finish_request(conn, fs)


def _peer(conn) -> str:
    client = conn.client
    return client[0] if isinstance(client, tuple) else str(client or "a local socket")


def worker_class(settings, spread=None):
    """The worker class for these rules' settings (timeouts and body cap), its workers' connections
    spread by `spread` (a `Spread` the master mapped) when given."""
    return type("BridgeWorker", (ReadAheadWorker,), {
        "__module__": __name__,
        "header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout,
        "max_body": settings.max_body_bytes, "spread": spread})
