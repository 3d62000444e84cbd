"""The Jenkins stand-in on the wire: the threaded HTTP server and the handler that answers as Jenkins
(and Jetty under it) does: its headers, JSON, Jenkins' HTML error pages and Jetty's sendError page.

Input: requests, handed to the stand-in's `handle(handler)`. Output: HTTP answers written by
`answer`, `json`, `error_page` and `jetty_error`, the status kept on the request's record.
"""
from __future__ import annotations

import html
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from helpers.standins.jenkins_model import Recorded

VERSION = "2.578"


def page(title: str, main: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><title>{title} [Jenkins]</title></head><body>"
            f"<div id=\"page-header\"><a href=\"/\">Jenkins</a></div>"
            f"<div id=\"main-panel\">{main}</div></body></html>").encode()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: Any   # the JenkinsStandin

    def handle_error(self, request, client_address):
        pass  # clients that time out leave broken pipes behind; that is expected here


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body go out in two writes: avoid 40 ms stalls
    server: Server
    record: Recorded | None = None

    def setup(self):
        super().setup()
        self.server.standin.connected(self.connection)

    def finish(self):
        self.server.standin.disconnected(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.standin.handle(self)

    do_POST = do_HEAD = do_GET

    def answer(self, status: int, body: bytes, headers: dict | None = None,
               content_type: str = "text/html;charset=utf-8") -> None:
        if self.record is not None:
            self.record.status = status
        self.send_response(status)
        self.send_header("X-Jenkins", VERSION)
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or status not in (201, 303):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, doc: dict) -> None:
        self.answer(200, json.dumps(doc).encode(), content_type="application/json;charset=utf-8")

    def jetty_error(self, status: int, message: str) -> None:
        """The page Jetty renders for a servlet's sendError(status, message)."""
        esc, path = html.escape(message), html.escape(urlsplit(self.path).path)
        self.answer(status, (
            f"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>"
            f"<title>Error {status} {esc}</title></head><body><h2>HTTP ERROR {status} {esc}</h2>"
            f"<table><tr><th>URI:</th><td>{path}</td></tr><tr><th>STATUS:</th><td>{status}</td></tr>"
            f"<tr><th>MESSAGE:</th><td>{esc}</td></tr><tr><th>SERVLET:</th><td>Stapler</td></tr>"
            f"</table></body></html>").encode())

    def error_page(self, status: int, message: str, headers: dict | None = None) -> None:
        """Jenkins renders refusals (hudson.model.Failure, AccessDenied) as an HTML error page."""
        self.answer(status, page("Error", f"<h1>Error</h1><p>{html.escape(message)}</p>"), headers)
