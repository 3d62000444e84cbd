"""Body parsing shared by the providers (bridge/providers/body.py), through its public functions:
what `parse_json` refuses and at which boundary (NUL anywhere in the object, lone surrogates at any
nesting, the form field cap, the BOM's position), and the typed readers `field`, `string_list`,
`ref`, `sha` and `commits`."""
from __future__ import annotations

import sys
from urllib.parse import quote

import pytest

from bridge.errors import BadPayload
from bridge.providers.body import commits, field, parse_json, ref, sha, string_list

FORM = "application/x-www-form-urlencoded"
SHA1 = "a" * 40


# --- parse_json ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"a": "x\\u0000"}',
    b'{"a": {"b": "\\u0000"}}',
    b'{"\\u0000": 1}',
    b'{"a": ["ok", "x\\u0000y"]}',
    b'{"a": [1, true, null, {"b": [["\\u0000"]]}]}',
], ids=["top", "nested-object", "key", "in-list", "deep-list"])
def test_a_nul_anywhere_is_refused(body):
    # PostgreSQL cannot store U+0000 in text or JSON: wherever it is, the delivery is a 400.
    with pytest.raises(BadPayload, match=r"^JSON body has a U\+0000 \(NUL\) character in a string$"):
        parse_json(body)


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    # The text holds "\\u0000" (a backslash, then "u0000"): the fast check sees it, the object has no NUL.
    body = b'{"a": "\\\\u0000", "b": [1, 2.5, true, null, "x"], "c": {"d": ["\\\\u0000"]}}'
    assert parse_json(body) == {"a": "\\u0000", "b": [1, 2.5, True, None, "x"], "c": {"d": ["\\u0000"]}}


def test_a_lone_surrogate_is_refused_at_any_nesting_depth():
    # Re-encoding (the surrogate check) needs more stack than decoding: nested just under the
    # decoder's limit, the check runs out of stack. The body is then refused as too deep, never
    # let through unchecked.
    for depth in range(1, sys.getrecursionlimit() + 10):
        body = b'{"a":' + b"[" * depth + b'"\\ud800"' + b"]" * depth + b"}"
        with pytest.raises(BadPayload) as caught:
            parse_json(body)
        assert caught.value.message in ("JSON body has a lone UTF-16 surrogate", "JSON body is nested too deeply"), depth


def test_a_bom_is_refused_at_its_position():
    with pytest.raises(BadPayload) as caught:
        parse_json(b"\xef\xbb\xbf{}")
    assert caught.value.message == ("body is not valid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) "
                                    "(line 1, column 1)")


@pytest.mark.parametrize("content_type", [FORM, "Application/X-WWW-Form-Urlencoded", f"{FORM}; charset=utf-8",
                                          f" {FORM} ;charset=utf-8"])
def test_a_form_body_is_unwrapped_whatever_the_case_and_parameters(content_type):
    assert parse_json(b"payload=%7B%22a%22%3A1%7D", content_type, form_field="payload") == {"a": 1}


def test_a_json_body_with_a_json_content_type_is_not_unwrapped():
    assert parse_json(b'{"payload": 1}', "application/json", form_field="payload") == {"payload": 1}
    assert parse_json(b'{"payload": 1}', None, form_field="payload") == {"payload": 1}


def test_the_form_field_cap_is_100_fields():
    payload = "payload=" + quote('{"a":1}')
    at_cap = "&".join([payload] + [f"f{i}=x" for i in range(99)])
    assert parse_json(at_cap.encode(), FORM, form_field="payload") == {"a": 1}
    over = at_cap + "&f99=x"
    with pytest.raises(BadPayload, match=r"^form body is not valid form encoding$"):
        parse_json(over.encode(), FORM, form_field="payload")


def test_the_form_field_is_picked_by_name_among_others():
    body = b"a=1&payload=%7B%22b%22%3A2%7D&c="
    assert parse_json(body, FORM, form_field="payload") == {"b": 2}


# --- field, string_list ---------------------------------------------------------------------------

def test_field_reads_typed_values_at_dotted_paths():
    obj = {"a": {"b": {"c": "x"}}, "n": 3, "t": True, "l": [1], "o": {}}
    assert field(obj, "a.b.c", str) == "x"
    assert field(obj, "n", int) == 3
    assert field(obj, "t", bool) is True
    assert field(obj, "l", list) == [1]
    assert field(obj, "o", dict) == {}


def test_field_absent_or_null_is_the_default_or_a_named_error():
    obj = {"a": None, "s": "text", "b": {"c": None}}
    assert field(obj, "missing", str, default="d") == "d"
    assert field(obj, "a", str, default="d") == "d"
    assert field(obj, "b.c", str) is None
    assert field(obj, "s.deeper", str, default="d") == "d"      # through a string: absent
    with pytest.raises(BadPayload, match=r"^tag event has no 'b\.c'$"):
        field(obj, "b.c", str, required=True, what="tag event")


@pytest.mark.parametrize("obj, kind, message", [
    ({"x": True}, int, "push payload field 'x' is not an integer"),
    ({"x": "1"}, int, "push payload field 'x' is not an integer"),
    ({"x": 1}, str, "push payload field 'x' is not a string"),
    ({"x": 1}, bool, "push payload field 'x' is not a boolean"),
    ({"x": {}}, list, "push payload field 'x' is not a list"),
    ({"x": 1}, float, "push payload field 'x' is not float"),   # a kind without a name of its own
])
def test_field_of_another_type_is_refused(obj, kind, message):
    with pytest.raises(BadPayload) as caught:
        field(obj, "x", kind)
    assert caught.value.message == message


def test_string_list():
    assert string_list({}, "added", what="w") == ()
    assert string_list({"added": None}, "added", what="w") == ()
    assert string_list({"added": ["a", "b/c"]}, "added", what="w") == ("a", "b/c")
    for bad in (["a", 1], "a", {"a": 1}):
        with pytest.raises(BadPayload, match=r"^w field 'added' is not a list of strings$"):
            string_list({"added": bad}, "added", what="w")


# --- ref, sha ----------------------------------------------------------------------------------------

def test_ref_is_checked_with_gits_rules():
    assert ref({"ref": "refs/heads/main"}) == "refs/heads/main"
    assert ref({"x": {"r": "refs/tags/v1"}}, "x.r", what="tag") == "refs/tags/v1"
    with pytest.raises(BadPayload, match=r"^push payload has no 'ref'$"):
        ref({})


def test_a_bad_ref_is_named_clipped_to_200_characters():
    value = "refs/heads/" + "a" * 300 + ".lock"
    with pytest.raises(BadPayload) as caught:
        ref({"ref": value})
    message = caught.value.message
    assert message.startswith("push payload field 'ref' is not a ref name git accepts: ")
    assert message.endswith(f"({value[:200]!r})")


def test_sha():
    assert sha({"after": SHA1}, "after") == SHA1
    assert sha({"after": "b" * 64}, "after") == "b" * 64
    assert sha({}, "after") == ""
    assert sha({"after": None}, "after", default="none") == "none"
    with pytest.raises(BadPayload, match=r"^push payload has no 'after'$"):
        sha({}, "after", required=True)
    for bad in ("A" * 40, "a" * 39, "a" * 41, "g" * 40, "a" * 63):
        with pytest.raises(BadPayload, match=r"^push payload field 'after' is not a commit SHA$"):
            sha({"after": bad}, "after")


# --- commits ---------------------------------------------------------------------------------------

def test_commits_read_every_field():
    payload = {"commits": [
        {"id": SHA1, "message": "m", "author": {"name": "A"}, "timestamp": "t",
         "added": ["a"], "modified": ["m1", "m2"], "removed": ["r"]},
        {"id": "b" * 40, "added": ["x"]},
        {"id": "c" * 40},
    ]}
    first, only_added, bare = commits(payload)
    assert (first.id, first.message, first.author, first.timestamp) == (SHA1, "m", "A", "t")
    assert (first.added, first.modified, first.removed, first.has_files) == (("a",), ("m1", "m2"), ("r",), True)
    assert (only_added.added, only_added.has_files) == (("x",), True)
    assert (bare.id, bare.message, bare.author, bare.added, bare.has_files) == ("c" * 40, "", "", (), False)


def test_commits_absent_and_bad():
    assert commits({}) == ()
    assert commits({"commits": None}) == ()
    with pytest.raises(BadPayload, match=r"^tag event commits\[1\] is not an object$"):
        commits({"commits": [{"id": SHA1}, "x"]}, what="tag event")
    with pytest.raises(BadPayload, match=r"^push payload commits\[0\] has no 'id'$"):
        commits({"commits": [{}]})
    with pytest.raises(BadPayload, match=r"^push payload field 'commits' is not a list$"):
        commits({"commits": {}})
