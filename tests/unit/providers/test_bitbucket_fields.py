"""Bitbucket Cloud edge cases the payload tables do not reach (found by mutation testing, issue
21): changes that are not refs (skipped with a reason), malformed changes and names, `forced` and
`commits_complete` corners, the pusher and author fallbacks, the clone URL, replay by `<id>+N`,
signing with an event, and the build-status client's request and answers at each boundary."""
from __future__ import annotations

import json

import pytest
from helpers.payloads import load_payload
from helpers.standins.bitbucket import BitbucketAPIStandin
from helpers.statuses import SHA, status
from werkzeug.datastructures import Headers

from bridge.errors import BadPayload, StatusRejected, StatusUnavailable
from bridge.events import ZERO_SHA, Ignored
from bridge.providers import bitbucket
from bridge.providers.bitbucket import Statuses

UPDATE = "bitbucket/repo_push__jenkins-update.json"
MULTI = "bitbucket/repo_push__jenkins-multiple-changes.json"
TOKEN = "bb-token-0002"
PUSH = Headers({"X-Event-Key": "repo:push"})


def payload(rel=UPDATE) -> dict:
    return json.loads(load_payload(rel)[0])


def normalize_all(doc: dict, delivery="d"):
    return bitbucket.normalize_all(PUSH, json.dumps(doc).encode(), source="s", delivery_id=delivery)


def one(doc: dict):
    result = normalize_all(doc)
    assert not isinstance(result, Ignored), result
    (event,) = result
    return event


def change(doc: dict) -> dict:
    return doc["push"]["changes"][0]


def test_changes_that_are_not_refs_are_skipped_with_their_reasons():
    doc = payload()
    ref = change(doc)
    doc["push"]["changes"] = [{"old": None, "new": None},
                              dict(ref, new=dict(ref["new"], type="bookmark"))]
    result = normalize_all(doc)
    assert isinstance(result, Ignored) and result.event_name == "repo:push"
    assert result.reason == "change 1 has neither 'old' nor 'new'; change 2 is a bookmark, neither a branch nor a tag"
    doc["push"]["changes"].append(ref)              # a real change after them: its own delivery id
    (event,) = normalize_all(doc)
    assert (event.delivery_id, event.ref) == ("d", "refs/heads/main")


@pytest.mark.parametrize("changes, message", [
    (["x"], "push payload push.changes[0] is not an object"),
    ([{"old": "x", "new": None}], "push payload push.changes[0] 'old' or 'new' is not an object"),
    ([{"old": None, "new": []}], "push payload push.changes[0] 'old' or 'new' is not an object"),
])
def test_malformed_changes(changes, message):
    doc = payload()
    doc["push"]["changes"] = changes
    with pytest.raises(BadPayload) as exc:
        normalize_all(doc)
    assert exc.value.message == message


@pytest.mark.parametrize("name", ["acme", "/acme", "acme/", "a/b/c", "x" * 150 + "/b/c"])
def test_full_name_must_be_workspace_slash_slug(name):
    doc = payload()
    doc["repository"]["full_name"] = name
    with pytest.raises(BadPayload) as exc:
        normalize_all(doc)
    assert exc.value.message == ("push payload field 'repository.full_name' is not workspace/slug: "
                                 f"{name[:100]!r}")


def test_events_not_handled_and_a_missing_event_key():
    body, _ = load_payload(UPDATE)
    result = bitbucket.normalize_all(Headers({"X-Event-Key": "repo:fork"}), body, source="s", delivery_id="d")
    assert result.reason == "event 'repo:fork' is not handled"
    with pytest.raises(BadPayload, match="X-Event-Key header is missing"):
        bitbucket.normalize_all(Headers({}), body, source="s", delivery_id="d")
    assert (bitbucket.event_name(Headers({})), bitbucket.delivery_id(Headers({"X-Request-UUID": ""}))) == ("", None)
    assert bitbucket.delivery_id(Headers({"X-Request-UUID": "u"})) == "u"


def test_forced_only_for_a_ref_that_existed_and_still_does():
    doc = payload()
    change(doc)["forced"] = True
    assert one(doc).forced is True
    change(doc)["old"] = None                          # a new ref is never forced
    event = one(doc)
    assert (event.forced, event.created, event.before) == (False, True, ZERO_SHA)
    doc = payload()
    ref = change(doc)
    doc["push"]["changes"] = [dict(ref, forced=True, new=None)]      # nor a deleted one
    event = one(doc)
    assert (event.forced, event.deleted, event.kind, event.sha, event.after) == (False, True, "delete", None, ZERO_SHA)
    assert (event.head_message, event.ref) == ("", "refs/heads/main")     # the name from `old`


def test_commits_complete_needs_commits_and_no_truncation():
    doc = payload()
    assert one(doc).commits_complete is True
    change(doc)["truncated"] = True
    assert one(doc).commits_complete is False
    change(doc)["truncated"] = False
    change(doc)["commits"] = []
    assert one(doc).commits_complete is False


def test_pusher_nickname_then_username_then_display_name():
    doc = payload()
    doc["actor"] = {"nickname": "nick", "username": "user", "display_name": "Dee"}
    assert one(doc).pusher == "nick"
    doc["actor"] = {"username": "user", "display_name": "Dee"}
    assert one(doc).pusher == "user"
    doc["actor"] = {"display_name": "Dee"}
    assert one(doc).pusher == "Dee"


def test_commit_author_from_raw_without_a_user():
    doc = payload()
    commit = change(doc)["commits"][0]
    commit["author"] = {"raw": "Ann Other <ann@example.com>"}
    (got,) = one(doc).commits
    assert (got.author, got.id, got.has_files) == ("Ann Other", commit["hash"], False)
    change(doc)["commits"] = [commit, "x"]
    with pytest.raises(BadPayload) as exc:
        normalize_all(doc)
    assert exc.value.message == "push payload push.changes[0] commits[1] is not an object"


@pytest.mark.parametrize("href, urls", [
    ("https://bitbucket.org/acme/api/", ("https://bitbucket.org/acme/api.git",)),
    ("http://bitbucket.example/acme/api", ()),
])
def test_the_clone_url_from_the_html_link(href, urls):
    doc = payload()
    doc["repository"]["links"]["html"]["href"] = href
    assert one(doc).clone_urls == urls


def test_replay_by_row_id():
    body, _ = load_payload(MULTI)
    refs = {d: bitbucket.normalize(PUSH, body, source="s", delivery_id=d) for d in ("u", "u+2", "u+3")}
    assert [(e.delivery_id, e.ref) for e in refs.values()] == [
        ("u", "refs/heads/main"), ("u+2", "refs/heads/manchu"), ("u+3", "refs/tags/v0.1")]
    # `+1`, `+x` and a bare `+` are part of the host's id, not a change number.
    for odd in ("u+1", "u+x", "u+"):
        assert bitbucket.normalize(PUSH, body, source="s", delivery_id=odd).delivery_id == odd
    assert bitbucket.normalize(PUSH, body, source="s", delivery_id="u+4").reason == \
        "the delivery has no change number 4"
    assert bitbucket.event_id("u", 0) == "u" and bitbucket.event_id("u", 1) == "u+2"
    fork = bitbucket.normalize(Headers({"X-Event-Key": "repo:fork"}), body, source="s", delivery_id="u+2")
    assert fork.reason == "event 'repo:fork' is not handled"


def test_sign_with_an_event_and_the_clone_host():
    headers = bitbucket.sign(b"{}", b"k", event="repo:commit_status_updated", delivery="d9")
    assert (headers["X-Event-Key"], headers["X-Request-UUID"], headers["X-Attempt-Number"]) == \
        ("repo:commit_status_updated", "d9", "1")
    assert headers["X-Hub-Signature"] == bitbucket.signature(b"{}", b"k")["X-Hub-Signature"]
    assert bitbucket.sign(b"{}", b"k", delivery="d")["X-Event-Key"] == "repo:push"
    assert bitbucket.clone_host("api.bitbucket.org") == "bitbucket.org"
    assert bitbucket.clone_host("bitbucket.example") == "bitbucket.example"


# --- the build-status client --------------------------------------------------------------------

def test_request_key_refname_and_path():
    client = Statuses("https://api.example/2.0", TOKEN)
    url, headers, body = client.request(status(context="c" * 45, ref="", repo="acme/a/b"))
    assert url == f"https://api.example/2.0/repositories/acme/a%2Fb/commit/{SHA}/statuses/build"
    assert (body["key"], body["name"], "refname" in body) == ("c" * 40, "c" * 45, False)
    assert headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.fixture
def bb():
    with BitbucketAPIStandin(TOKEN) as s:
        yield s


def outcome(bb, code, body=None):
    bb.answer_next(code, body if body is not None else {"type": "error", "error": {"message": "m"}})
    try:
        answer = Statuses(bb.api_url, TOKEN, now=lambda: 1000.0).post(status())
    except StatusUnavailable as exc:
        return "retry", str(exc)
    except StatusRejected as exc:
        return "failed", str(exc)
    return answer.outcome, answer.message


@pytest.mark.parametrize("code, expected", [
    (200, "sent"), (299, "sent"), (300, "failed"), (400, "done"), (401, "failed"), (409, "failed"),
    (429, "retry"), (430, "failed"), (499, "failed"), (500, "retry"), (501, "retry"),
])
def test_answers_at_each_boundary(bb, code, expected):
    assert outcome(bb, code)[0] == expected


@pytest.mark.parametrize("code, hint", [(401, True), (402, False), (403, True), (404, True), (405, False)])
def test_the_token_hint_on_a_refusal(bb, code, hint):
    got, message = outcome(bb, code)
    assert got == "failed" and message.startswith(f"{code} m")
    assert ("(the token may not write build statuses to this repository)" in message) is hint


@pytest.mark.parametrize("body, message", [
    ({"type": "error", "error": {"message": f"bad {TOKEN} " + "x" * 400}}, "400 bad *** " + "x" * 291 + "\u2026"),
    ({"type": "error", "error": "flat"}, "400 Bad Request"),
    ({"type": "error", "error": {"message": 7}}, "400 Bad Request"),
    (["not", "an", "object"], "400 Bad Request"),
    ("<html>oops</html>", "400 Bad Request"),
    ({"message": "gitea-like"}, "400 gitea-like"),
])
def test_error_messages_in_bitbuckets_words_or_the_generic_ones(bb, body, message):
    assert outcome(bb, 400, body) == ("done", message)
