"""The body cap (settings.max_body_bytes) at its boundary, with and without a Content-Length:
a chunked body (no Content-Length, as a proxy may forward it) is read at most cap + 1 bytes."""
import io

import pytest
from helpers.rules import BASE_RULES, GITHUB_SECRET
from helpers.payloads import load_payload, sign_github

PAYLOAD = "github/push__goscm-branch.json"


class CountingStream(io.BytesIO):
    """A request body that records how many bytes the view asked for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked = 0

    def read(self, n=-1):
        self.asked += n if n is not None and n >= 0 else 10**12
        return super().read(n)


def _app(make_app, cap: int):
    return make_app(BASE_RULES + f"settings:\n  max_body_bytes: {cap}\n")


def _signed():
    body, headers = load_payload(PAYLOAD)
    headers.update(sign_github(body, GITHUB_SECRET))
    return body, headers


def _post_chunked(app, body: bytes, headers: dict):
    """POST without a Content-Length: the body ends where the stream ends (gunicorn's chunked)."""
    stream = CountingStream(body)
    environ = {"wsgi.input": stream, "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    resp = app.test_client().post("/hooks/github", headers=headers, environ_overrides=environ)
    return resp, stream


@pytest.mark.parametrize("slack, status", [(0, 202), (1, 202), (-1, 413)])
def test_content_length_boundary(make_app, slack, status):
    body, headers = _signed()
    app, store = _app(make_app, len(body) + slack)
    resp = app.test_client().post("/hooks/github", data=body, headers=headers)
    assert resp.status_code == status, resp.get_data()
    assert len(store.list_deliveries()) == (1 if status == 202 else 0)


@pytest.mark.parametrize("slack, status", [(0, 202), (1, 202), (-1, 413), (-100, 413)])
def test_chunked_body_boundary(make_app, slack, status):
    body, headers = _signed()
    cap = len(body) + slack
    app, store = _app(make_app, cap)
    resp, stream = _post_chunked(app, body, headers)
    assert resp.status_code == status, resp.get_data()
    if status == 413:
        assert resp.get_json() == {"error": f"body is over the {cap}-byte cap",
                                   "delivery": headers["X-GitHub-Delivery"]}
        assert resp.headers["Connection"] == "close"
        assert store.list_deliveries() == []
    else:
        assert store.get_delivery(headers["X-GitHub-Delivery"])["body"] == body
    # Never more than one byte past the cap is read, however long the body is.
    assert stream.asked <= cap + 1


def test_chunked_body_far_over_cap_reads_only_cap_plus_one(make_app):
    cap = 1000
    app, store = _app(make_app, cap)
    body = b"{" + b" " * (10 * cap) + b"}"
    resp, stream = _post_chunked(app, body, {"X-GitHub-Event": "push", "Content-Type": "application/json",
                                             **sign_github(body, GITHUB_SECRET)})
    assert resp.status_code == 413
    assert stream.asked == cap + 1
    assert store.list_deliveries() == []
