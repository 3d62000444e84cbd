"""Bodies the providers refuse or ignore: bad JSON (deep nesting, huge numbers, surrogates), form body
problems, a missing event header, and ignored events that need no parsable body."""
from __future__ import annotations

import pytest
from werkzeug.datastructures import Headers

from bridge.errors import BadPayload
from bridge.providers import get_provider, github, gitlab
from bridge.providers.body import parse_json


# --- bad bodies -------------------------------------------------------------------------------

def python_int_error(digits: str) -> str:
    """What this Python says about an integer too long to convert (the text and the limit vary)."""
    try:
        int(digits)
    except ValueError as exc:
        return str(exc)
    raise AssertionError("no limit on integer digits in this Python")


DEEP = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize("body, message", [
    (b"", "body is not valid JSON: Expecting value (line 1, column 1)"),
    (b"{not json", "body is not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
    (b'{"a": 1', "body is not valid JSON: Expecting ',' delimiter (line 1, column 8)"),
    (b"[1, 2]", "JSON body is an array, not an object"),
    (b'"push"', "JSON body is a string, not an object"),
    (b"null", "JSON body is null, not an object"),
    (b"42", "JSON body is a number, not an object"),
    (DEEP, "JSON body is nested too deeply"),
    (b'{"ref": "\xff\xfe"}', "body is not valid UTF-8"),
    (b'{"ref": "\xed\xa0\x80"}', "body is not valid UTF-8"),   # a surrogate in UTF-8 form
    (b'{"ref": "\\ud800"}', "JSON body has a lone UTF-16 surrogate"),
    (b'{"ref": "\\ud800x"}', "JSON body has a lone UTF-16 surrogate"),
    (b'{"ref": "\\udc00"}', "JSON body has a lone UTF-16 surrogate"),
    (b'{"ref": "\\\\ud83d\\ude00"}', "JSON body has a lone UTF-16 surrogate"),   # escaped backslash, then a low half
    (b'{"n": NaN}', "JSON body has the non-standard constant 'NaN'"),
    (b'{"n": -Infinity}', "JSON body has the non-standard constant '-Infinity'"),
    # Python's own words (and its limit: sys.set_int_max_str_digits, PYTHONINTMAXSTRDIGITS).
    (b'{"n": ' + b"9" * 5000 + b"}", "body is not valid JSON: " + python_int_error("9" * 5000)),
], ids=["empty", "garbage", "truncated", "array", "string", "null", "number", "deep", "bad-utf8",
        "utf8-surrogate", "lone-high", "high-then-text", "lone-low", "escaped-backslash", "nan", "infinity",
        "huge-int"])
def test_bad_bodies(body, message):
    for provider, headers in [("github", {"X-GitHub-Event": "push"}), ("gitlab", {"X-Gitlab-Event": "Push Hook"})]:
        with pytest.raises(BadPayload) as exc:
            get_provider(provider).normalize(Headers(headers), body, source="s", delivery_id="d")
        assert exc.value.message == message
        assert exc.value.status == 400


def test_valid_surrogate_pairs_and_escapes_pass():
    assert parse_json(b'{"m": "\\ud83d\\ude00 \\\\ud800 \\u00e9"}') == {"m": "\U0001F600 \\ud800 \u00e9"}


def test_form_body_problems():
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    assert parse_json(b"payload=%7B%22a%22%3A1%7D", form["Content-Type"], form_field="payload") == {"a": 1}
    with pytest.raises(BadPayload, match=r"^form body has no single 'payload' field$"):
        parse_json(b"other=1", form["Content-Type"], form_field="payload")
    with pytest.raises(BadPayload, match=r"^form body has no single 'payload' field$"):
        parse_json(b"payload=%7B%7D&payload=%7B%7D", form["Content-Type"], form_field="payload")
    with pytest.raises(BadPayload, match=r"^form body is not valid form encoding$"):
        parse_json(b"payload=%FF", form["Content-Type"], form_field="payload")
    # Without form_field (GitLab) a form body is just not JSON.
    with pytest.raises(BadPayload, match="^body is not valid JSON"):
        parse_json(b"payload=%7B%7D", form["Content-Type"])


def test_missing_event_header_is_a_bad_payload():
    with pytest.raises(BadPayload, match=r"^X-GitHub-Event header is missing$"):
        github.normalize(Headers({}), b"{}", source="s", delivery_id="d")
    with pytest.raises(BadPayload, match=r"^X-Gitlab-Event header is missing$"):
        gitlab.normalize(Headers({}), b"{}", source="s", delivery_id="d")


def test_ignored_events_do_not_need_a_parsable_body():
    # Nothing is parsed for events we do not handle, so a ping cannot fail on its body.
    assert github.normalize(Headers({"X-GitHub-Event": "ping"}), b"\xff", source="s", delivery_id="d").reason == "ping"
