"""The HTTP part every stand-in shares (Jenkins, GitHub, GitLab): serve on 127.0.0.1 in a thread
of its own, and stop like a host that dies, cutting kept-alive connections too.

Input: a ThreadingHTTPServer subclass and handler class. Output: `start()`/`stop()` and a context
manager on the stand-in; the handler calls `connected`/`disconnected` from setup/finish.
"""
from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer


class ServesHTTP:
    """Mixin: the stand-in sets `port` (0: any free one) and `_lock` before `start()`."""

    server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
    handler_class: type = None   # set by each stand-in

    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self):
        server = self.server_class(("127.0.0.1", self.port), self.handler_class)
        server.daemon_threads = True
        server.standin = self
        self._sockets: set[socket.socket] = set()
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (kept-alive ones too), like a dead host:
        clients see refused or reset connections."""
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None

    def connected(self, conn: socket.socket) -> None:
        with self._lock:
            self._sockets.add(conn)

    def disconnected(self, conn: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(conn)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
