"""The delivery page's plain parts: the chart's paths, the filter and cursor parsers, secrets
hidden in a job's request, the proxy-prefix middleware."""
from __future__ import annotations

import re

import pytest
from werkzeug.datastructures import MultiDict

from bridge.globs import compile_pattern
from bridge.store.reads import like_filter
from bridge.web.ui import chart
from bridge.web.ui.auth import ProxyPrefix, in_networks
from bridge.web.ui.pages import hide_secrets, parse_cursor, parse_filter, pretty_body

NOW = 1_700_000_000.0


def test_the_chart_stacks_outcomes_per_minute_scaled_to_the_peak():
    start = (int(NOW) // 60 + 1) * 60 - chart.SPAN
    rows = [(start, "matched", 4), (start, "no_match", 2), (start + 60, "ignored", 1),
            (start - 60, "matched", 99), (start + chart.SPAN, "matched", 99)]   # outside: dropped
    c = chart.build(rows, NOW)
    assert c.peak == 6 and c.totals["matched"] == 4 and c.totals["ignored"] == 1
    assert c.paths["matched"] == "M0 33.33h1v66.67h-1z"
    assert c.paths["no_match"] == "M0 0.00h1v33.33h-1z"
    assert c.paths["ignored"] == "M1 83.33h1v16.67h-1z"
    assert len(c.ticks) == 9 and c.ticks[-1][0] == 1440


def test_an_empty_day_draws_nothing():
    c = chart.build([], NOW)
    assert c.paths == {} and c.peak == 0


def test_filters_and_cursor_parse_or_say_why():
    f = parse_filter(MultiDict({"repo": " acme/* ", "outcome": "no_match", "state": "dead",
                                "since": "1h", "ref": ""}))
    assert (f.repo, f.outcome, f.job_state, f.ref) == ("acme/*", "no_match", "dead", None)
    assert f.since is not None and f.until is None
    for bad in ({"outcome": "accepted"}, {"state": "waiting"}, {"since": "soon"}):
        with pytest.raises(ValueError):
            parse_filter(MultiDict(bad))
    assert parse_cursor("1700000000.125:d:with:colons") == (1700000000.125, "d:with:colons")
    assert parse_cursor(None) is None
    with pytest.raises(ValueError):
        parse_cursor("nocolon")


def test_secret_sounding_keys_are_hidden_at_any_depth():
    got = hide_secrets({"parameters": {"API_TOKEN": "t", "SHA": "abc"}, "list": [{"password": 1}]})
    assert got == {"parameters": {"API_TOKEN": "(hidden)", "SHA": "abc"}, "list": [{"password": "(hidden)"}]}


def test_the_body_is_pretty_when_json_and_as_sent_otherwise():
    assert pretty_body(b'{"a":[1]}') == '{\n  "a": [\n    1\n  ]\n}'
    assert pretty_body(b"a=1&b=2") == "a=1&b=2"


def test_the_prefix_is_believed_only_from_a_trusted_proxy():
    seen = {}

    def app(environ, start_response):
        seen.update(script=environ.get("SCRIPT_NAME", ""), scheme=environ["wsgi.url_scheme"])
        return []
    mw = ProxyPrefix(app, lambda: ("127.0.0.1", "10.0.0.0/8"))
    base = {"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PREFIX": "/bridge/",
            "HTTP_X_FORWARDED_PROTO": "https"}
    mw({**base, "REMOTE_ADDR": "10.1.2.3"}, None)
    assert seen == {"script": "/bridge", "scheme": "https"}
    mw({**base, "REMOTE_ADDR": "192.0.2.1"}, None)
    assert seen == {"script": "", "scheme": "http"}
    mw({**base, "REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_PREFIX": "/a b"}, None)
    assert seen["script"] == ""                          # not a path: ignored
    assert in_networks("::1", ["::1"]) and not in_networks("nonsense", ["0.0.0.0/0"])


@pytest.mark.parametrize("glob, like", [
    ("acme/*", "acme/%"), ("**/api", "%/api"), ("a*b", "a%b"), ("ab?c/*", "a%"), ("ab+c", "ab%c"),
    ("x[ab]", "x%"), ("[ab]x", "%x"), ("a_b%/*", "a\\_b\\%/%"), ("!acme/*", None), ("**", None),
])
def test_a_globs_literal_start_and_end_as_like(glob, like):
    assert like_filter(glob) == like


@pytest.mark.parametrize("glob", ["acme/*", "**/api", "a*b", "ab?c/*", "ab+c", "x[ab]", "[ab]x"])
def test_every_repository_a_glob_matches_passes_its_like(glob):
    compiled = compile_pattern(glob)
    like = re.compile("^" + re.escape(like_filter(glob)).replace("%", ".*") + "$", re.S)
    for repo in ("acme/api", "x/api", "ab", "ac/x", "abc", "abbbc", "xa", "ax", "bx", "aXb", "acme/"):
        if compiled.match(repo):
            assert like.match(repo), (glob, repo)
