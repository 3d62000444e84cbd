"""Web stage, before the app: where one HTTP/1.1 request ends, found from its bytes as they arrive.

Input: the bytes a client has sent so far on a connection. Output: NEED_MORE, COMPLETE (with
the request's length), or why the web worker (webworker.py) must answer the client itself.
"""
from __future__ import annotations

import re

NEED_MORE, COMPLETE, TOO_LARGE, HAND_OVER, BAD, HEADERS_TOO_LARGE = (
    "need_more", "complete", "too_large", "hand_over", "bad", "headers_too_large")

#: The header fields that say where a request ends (and whether to send 100 Continue).
_FRAMING = re.compile(rb"\r\n(content-length|transfer-encoding|expect)[ \t]*:([^\r]*)", re.I)


class RequestFrame:
    """Where one HTTP/1.x request ends, found from its bytes as they arrive (incrementally).

    Only the framing is decided here (header end, Content-Length, chunked); gunicorn's parser
    still decides whether the request is valid. HAND_OVER: the framing is not one this scanner
    vouches for (a Content-Length gunicorn will refuse, a transfer coding other than chunked,
    lines not ended by CRLF): the bytes go to gunicorn as they are, which answers 400, and the
    connection is closed after the reply. BAD: a chunked body whose framing is broken (the
    worker answers 400: gunicorn would raise in the app).
    HEADERS_TOO_LARGE: no header end within `max_header` bytes, or a line over `max_line`."""

    def __init__(self, max_header: int, max_body: int, max_line: int | None = None):
        self.max_header, self.max_body = max_header, max_body
        self.max_line = max_line or max_header
        self.header_end: int | None = None    # offset of the body's first byte
        self.length: int | None = None        # Content-Length
        self.chunked = False
        self.expects_continue = False
        self._scan = 0                        # where the next search starts
        self._line = 0                        # headers: where the current line starts
        self._decoded = 0                     # chunked: body bytes so far
        self._trailers = False                # chunked: past the last chunk

    def feed(self, buf: bytes | bytearray) -> str:
        if self.header_end is None:
            state = self._find_header_end(buf)
            if state is not None:
                return state
        if self.length is not None:
            return COMPLETE if len(buf) >= self.header_end + self.length else NEED_MORE
        if self.chunked:
            return self._chunks(buf)
        return COMPLETE

    def _find_header_end(self, buf) -> str | None:
        start = max(0, self._scan - 2)
        end = buf.find(b"\n\r\n", start)
        bare = buf.find(b"\n\n", start, len(buf) if end < 0 else end)
        if bare >= 0 and (end < 0 or bare < end) or end == 0 or end > 0 and buf[end - 1] != 13:
            return HAND_OVER                  # lines not ended by CRLF: gunicorn's to judge
        if end < 0:
            self._scan = len(buf)
            self._line = buf.rfind(b"\n", start) + 1 or self._line
            too_long = len(buf) > self.max_header or len(buf) - self._line > self.max_line
            return HEADERS_TOO_LARGE if too_long else NEED_MORE
        self.header_end = end + 3
        self._scan = self.header_end
        return self._headers(bytes(buf[:end - 1]))

    @property
    def end(self) -> int:
        """Bytes of the request once COMPLETE (what may follow is the next, pipelined request)."""
        if self.length is not None:
            return self.header_end + self.length
        return self._scan if self.chunked else self.header_end

    def _headers(self, block: bytes) -> str | None:
        crlf = block.count(b"\r\n")
        if block.count(b"\n") != crlf or block.count(b"\r") != crlf:
            return HAND_OVER                  # a bare CR or LF: gunicorn's to judge
        version = block[:block.find(b"\r\n")].rsplit(b" ", 1)[-1]
        lengths, codings = set(), []
        for name, value in _FRAMING.findall(block):
            name, value = name.lower(), value.strip()
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",")]
            elif value.lower() == b"100-continue" and version == b"HTTP/1.1":
                self.expects_continue = True
        if codings:
            if lengths or codings != [b"chunked"]:
                return HAND_OVER
            self.chunked = True
            return None
        if len(lengths) > 1:
            return HAND_OVER
        if lengths:
            value = lengths.pop()
            if not value.isdigit() or len(value) > 18:
                return HAND_OVER
            self.length = int(value)
            if self.length > self.max_body:
                return TOO_LARGE
        return None

    def _chunks(self, buf) -> str:
        while True:
            line_end = buf.find(b"\r\n", self._scan)
            if line_end < 0:
                return BAD if len(buf) - self._scan > 4096 else NEED_MORE
            if self._trailers:               # field lines, then an empty line
                empty = line_end == self._scan
                self._scan = line_end + 2
                if empty:
                    return COMPLETE
                continue
            size = buf[self._scan:line_end].split(b";", 1)[0].strip()
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                return BAD
            size = int(size, 16)
            if size == 0:
                self._trailers = True
                self._scan = line_end + 2
                continue
            if self._decoded + size > self.max_body:
                return TOO_LARGE
            if len(buf) < line_end + 2 + size + 2:
                return NEED_MORE
            if buf[line_end + 2 + size:line_end + 2 + size + 2] != b"\r\n":
                return BAD
            self._decoded += size
            self._scan = line_end + 2 + size + 2
