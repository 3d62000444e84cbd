"""Fuzzing the ingress through the real Flask app on a real SQLite store: the shared payloads,
mutated (JSON values swapped or dropped, bytes flipped, cut or padded) with mutated headers,
signed and unsigned. Every reply is one the design names (200/202/400/401/404/413), never a
5xx, and nothing is logged with a traceback. Bounded: 800 examples, about 10 s."""
from __future__ import annotations

import json
import logging

import pytest
from helpers.rules import BASE_RULES, GITHUB_SECRET, GITLAB_TOKEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers.payloads import load_payload, payload_files, sign_github

ALLOWED = {200, 202, 400, 401, 404, 413}
CAP = 64 * 1024
RULES = BASE_RULES + f"""\
  - name: exec-env
    on: {{repo: "**", branches: ["**"]}}
    run: {{target: mem, parameters: {{REF: "${{ref}}", WHO: "${{pusher}}"}}}}
settings:
  max_body_bytes: {CAP}
"""
PAYLOADS = payload_files("github") + payload_files("gitlab")
PAYLOADS += [p for p in PAYLOADS if "push" in p] * 2      # the deliveries that reach the store

_json_leaf = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
              | st.floats(allow_nan=False) | st.text(max_size=40)
              | st.sampled_from(["refs/heads/main", "refs/heads/--upload-pack=x", "refs/tags/v1",
                                 "0" * 40, "a" * 40, "refs/heads/a..b", "refs/heads/$(id)",
                                 "acme/api", "../../etc", "\u0000", "\ud800x", "refs/heads/x.lock"]))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
# Header values travel as latin-1 text and may not hold line breaks.
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xff), max_size=60)


def _paths(value, prefix=()):
    """Every (path) to a value inside a JSON document, the root excluded."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(value, list):
        for i, v in enumerate(value[:5]):
            out.append(prefix + (i,))
            out.extend(_paths(v, prefix + (i,)))
    return out


#: The fields the providers read: edits there reach the parsers, rules and store.
_READ = [("ref",), ("before",), ("after",), ("created",), ("deleted",), ("forced",), ("commits",),
         ("head_commit",), ("head_commit", "id"), ("head_commit", "message"), ("pusher", "name"),
         ("repository",), ("repository", "full_name"), ("repository", "clone_url"),
         ("repository", "default_branch"), ("checkout_sha",), ("total_commits_count",),
         ("project",), ("project", "path_with_namespace"), ("project", "git_http_url"),
         ("user_username",), ("event_name",), ("object_kind",), ("commits", 0, "id"),
         ("commits", 0, "added"), ("commits", 0, "message"), ("commits", 0, "timestamp")]


def _mutate_json(body: bytes, data) -> bytes:
    doc = json.loads(body)
    paths = _paths(doc)
    for _ in range(data.draw(st.integers(1, 3), label="json edits")):
        read = [p for p in _READ if p in paths]
        if read and data.draw(st.booleans(), label="read field"):
            path = data.draw(st.sampled_from(read), label="read path")
        elif paths:
            path = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
        else:
            break
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans(), label="drop") and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = data.draw(_json, label="value")
        paths = _paths(doc)
    return json.dumps(doc, ensure_ascii=data.draw(st.booleans(), label="ascii")).encode("utf-8",
                                                                                        "surrogatepass")


def _mutate_bytes(body: bytes, data) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "pad", "empty"]), label="byte edit")
    if kind == "empty":
        return b""
    if kind == "pad":
        return body + b" " * (CAP + 1 - len(body) + data.draw(st.integers(0, 10)))
    at = data.draw(st.integers(0, max(len(body) - 1, 0)), label="at")
    if kind == "flip":
        return body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1:]
    if kind == "cut":
        return body[:at]
    return body[:at] + data.draw(st.binary(max_size=20), label="inserted") + body[at:]


def _headers(provider: str, headers: dict, body: bytes, data) -> dict:
    headers = dict(headers)
    for name in list(headers):
        action = data.draw(st.sampled_from(["keep"] * 14 + ["drop", "replace"]), label=f"h:{name}")
        if action == "drop":
            del headers[name]
        elif action == "replace":
            headers[name] = data.draw(_header_text, label=f"v:{name}")
    if data.draw(st.booleans(), label="content-type"):
        headers["Content-Type"] = data.draw(st.sampled_from(
            ["application/json", "application/x-www-form-urlencoded", "text/plain", "", "x/y; q=1"]))
    signing = data.draw(st.sampled_from(["good"] * 9 + ["wrong", "malformed", "none"]),
                        label="signature")
    if provider == "github":
        if signing == "good":
            headers.update(sign_github(body, GITHUB_SECRET))
        elif signing == "wrong":
            headers.update(sign_github(body, "not-the-secret"))
        elif signing == "malformed":
            headers["X-Hub-Signature-256"] = data.draw(_header_text, label="bad signature")
    else:
        if signing == "good":
            headers["X-Gitlab-Token"] = GITLAB_TOKEN
        elif signing in ("wrong", "malformed"):
            headers["X-Gitlab-Token"] = data.draw(_header_text, label="bad token")
    return headers


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.bad = []

    def emit(self, record):
        if record.exc_info or record.levelno >= logging.ERROR:
            self.bad.append(self.format(record))


@pytest.fixture
def fuzz_client(make_app):
    app, store = make_app(RULES)
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    app.logger.addHandler(handler)
    try:
        yield app.test_client(), handler
    finally:
        root.removeHandler(handler)
        app.logger.removeHandler(handler)


@settings(max_examples=800, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_deliveries_get_only_designed_replies(fuzz_client, data):
    client, handler = fuzz_client
    rel = data.draw(st.sampled_from(PAYLOADS), label="payload")
    provider = rel.split("/")[0]
    body, headers = load_payload(rel)
    mode = data.draw(st.sampled_from(["json", "json", "bytes", "as-is"]), label="mode")
    if mode == "json":
        body = _mutate_json(body, data)
    elif mode == "bytes":
        body = _mutate_bytes(body, data)
    headers = _headers(provider, headers, body, data)
    other = "gitlab" if provider == "github" else "github"
    source = data.draw(st.sampled_from([provider] * 10 + ["nope", other]), label="source")
    resp = client.post(f"/hooks/{source}", data=body, headers=headers)
    assert resp.status_code in ALLOWED, (resp.status_code, resp.get_data(as_text=True)[:500])
    reply = resp.get_json()
    assert isinstance(reply, dict), resp.get_data()[:200]
    if resp.status_code >= 400:
        assert isinstance(reply.get("error"), str) and "Traceback" not in reply["error"]
    assert GITHUB_SECRET not in resp.get_data(as_text=True)
    assert GITLAB_TOKEN not in resp.get_data(as_text=True)
    assert not handler.bad, handler.bad[:1]
