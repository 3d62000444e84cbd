"""Gitea/Forgejo edge cases the payload tables do not reach (found by mutation testing, issue 21):
`commits_complete` without `total_commits` (older Gitea lists at most 5), the head message taken
from commits[] when `head_commit` is absent, refs and ref types that are neither branch nor tag,
`repository.full_name` refusals, the hook secret kept only when it is a top-level key, signing
with an event, and the status client's request and answers at each documented boundary."""
from __future__ import annotations

import json

import pytest
from helpers.payloads import load_payload
from helpers.standins.gitea import GiteaAPIStandin
from helpers.statuses import SHA, status
from werkzeug.datastructures import Headers

from bridge.errors import BadPayload, StatusRejected, StatusUnavailable
from bridge.events import ZERO_SHA, Event, Ignored
from bridge.providers.gitea import FORGEJO, GITEA, GiteaStatuses

MULTI = "gitea/push__woodpecker-multi-commits.json"
TOKEN = "gitea-token-0002"


def normalize(payload: dict, event: str = "push", host=GITEA):
    headers = Headers({f"X-{host.TITLE}-Event": event})
    return host.normalize(headers, json.dumps(payload).encode(), source="s", delivery_id="d")


def multi() -> dict:
    return json.loads(load_payload(MULTI)[0])


def with_commits(n: int) -> dict:
    """The multi-commit push without `total_commits`, as Gitea before 1.17 sent it, listing n."""
    payload = multi()
    del payload["total_commits"]
    one = payload["commits"][0]
    payload["commits"] = [dict(one, id=f"{i:040x}") for i in range(n)]
    return payload


@pytest.mark.parametrize("n, complete", [(0, True), (4, True), (5, False), (6, False)])
def test_without_total_commits_a_full_list_of_five_may_be_cut(n, complete):
    assert normalize(with_commits(n)).commits_complete is complete


@pytest.mark.parametrize("total, complete", [(2, True), (3, True), (4, False)])
def test_total_commits_against_the_list(total, complete):
    payload = dict(multi(), total_commits=total)
    assert normalize(payload).commits_complete is complete


def test_head_message_from_commits_when_head_commit_is_absent():
    payload = multi()
    del payload["head_commit"]
    payload["commits"][0]["message"] = "newest"
    payload["commits"][1]["message"] = "older"
    event = normalize(payload)
    assert (event.sha, event.head_message) == (payload["after"], "newest")
    payload["commits"] = payload["commits"][1:]      # the head not listed: no message
    assert normalize(payload).head_message == ""


def test_pusher_login_then_username():
    payload = multi()
    payload["pusher"] = {"username": "old-gitea"}
    assert normalize(payload).pusher == "old-gitea"
    payload["pusher"] = {"login": "new", "username": "old"}
    assert normalize(payload).pusher == "new"


def test_a_push_with_after_all_zeros_is_a_deletion():
    payload = dict(multi(), after=ZERO_SHA)
    event = normalize(payload)
    assert (event.kind, event.sha, event.deleted, event.created) == ("delete", None, True, False)


def test_a_tag_push_and_a_new_branch():
    payload = dict(multi(), ref="refs/tags/v1", before=ZERO_SHA)
    event = normalize(payload)
    assert (event.kind, event.ref_name, event.created, event.deleted) == ("tag", "v1", True, False)


def test_a_ref_neither_branch_nor_tag_is_ignored():
    result = normalize(dict(multi(), ref="refs/pull/3/head"))
    assert isinstance(result, Ignored)
    assert result.reason == "ref 'refs/pull/3/head' is neither a branch nor a tag"


def test_delete_of_a_branch_a_tag_and_something_else():
    body, _ = load_payload("gitea/delete__gp-branch.json")
    payload = json.loads(body)
    event = normalize(payload, "delete")
    assert (event.ref, event.ref_name, event.kind) == ("refs/heads/example3", "example3", "delete")
    event = normalize(dict(payload, ref_type="tag"), "delete")
    assert event.ref == "refs/tags/example3"
    result = normalize(dict(payload, ref_type="repository"), "delete")
    assert isinstance(result, Ignored)
    assert result.reason == "deleted ref_type 'repository' is neither a branch nor a tag"


def test_events_not_handled_and_a_missing_event_header():
    assert normalize(multi(), "issues").reason == "event 'issues' is not handled"
    assert isinstance(normalize(multi(), "create"), Ignored)
    with pytest.raises(BadPayload, match="X-Gitea-Event header is missing"):
        GITEA.normalize(Headers({}), b"{}", source="s", delivery_id="d")


def test_forgejo_reads_giteas_event_and_delivery_headers_too():
    headers = Headers({"X-Gitea-Event": "push", "X-Gitea-Delivery": "g-1"})
    assert (FORGEJO.event_name(headers), FORGEJO.delivery_id(headers)) == ("push", "g-1")
    assert isinstance(FORGEJO.normalize(headers, json.dumps(multi()).encode(), source="s",
                                        delivery_id="g-1"), Event)
    assert (FORGEJO.event_name(Headers({})), FORGEJO.delivery_id(Headers({}))) == ("", None)


@pytest.mark.parametrize("name", ["acme", "acme/", "/api", "acme/api/x", "a" * 150 + "/b/c"])
def test_full_name_must_be_owner_slash_name(name):
    payload = multi()
    payload["repository"]["full_name"] = name
    with pytest.raises(BadPayload) as exc:
        normalize(payload)
    assert exc.value.message == ("push payload field 'repository.full_name' is not owner/name: "
                                 f"{name[:100]!r}")


def test_the_secret_is_dropped_only_as_a_top_level_key():
    body, _ = load_payload("gitea/push__docs.json")
    assert b'"secret"' in body
    stored = GITEA.stored_body(body)
    assert "secret" not in json.loads(stored)
    assert json.loads(stored) == {k: v for k, v in json.loads(body).items() if k != "secret"}
    payload = multi()
    payload["repository"]["secret"] = "not the hook's"     # a nested key of that name is kept
    nested = json.dumps(payload).encode()
    assert b'"secret"' in nested and GITEA.stored_body(nested) is nested


def test_sign_with_an_event_and_the_host_surface():
    headers = GITEA.sign(b"{}", b"k", event="delete", delivery="d9")
    assert (headers["X-Gitea-Event"], headers["X-Gitea-Event-Type"], headers["X-Gitea-Delivery"]) == \
        ("delete", "delete", "d9")
    assert headers["X-Hub-Signature-256"] == "sha256=" + headers["X-Gitea-Signature"]
    assert GITEA.sign(b"{}", b"k", delivery="d")["X-Gitea-Event"] == "push"
    assert (repr(GITEA), repr(FORGEJO)) == ("<provider gitea>", "<provider forgejo>")
    assert GITEA.clone_host("git.example.com") == "git.example.com"
    assert (GITEA.API_URL, GITEA.Statuses, FORGEJO.Statuses.provider) == ("", GiteaStatuses, "forgejo")
    assert FORGEJO.KEEP_PREFIXES == ("x-forgejo-", "x-gitea-", "x-gogs-")
    assert "X-Gogs-Signature" in GITEA.SECRET_HEADERS and "X-Hub-Signature" in FORGEJO.SECRET_HEADERS


# --- the status client --------------------------------------------------------------------------

@pytest.fixture
def gitea():
    with GiteaAPIStandin(TOKEN) as s:
        yield s


def test_no_build_url_sends_no_target_url(gitea):
    assert GiteaStatuses(gitea.api_url, TOKEN).post(status("pending")).outcome == "sent"
    assert "target_url" not in json.loads(gitea.requests[0].body)


def test_a_slash_in_the_repository_name_is_escaped():
    url, _, _ = GiteaStatuses("https://g.example/api/v1", TOKEN).request(status(repo="acme/a/b"))
    assert url == f"https://g.example/api/v1/repos/acme/a%2Fb/statuses/{SHA}"


def outcome(gitea, code, body=None):
    gitea.answer_next(code, body if body is not None else {"message": "m"})
    try:
        answer = GiteaStatuses(gitea.api_url, TOKEN, now=lambda: 1000.0).post(status())
    except StatusUnavailable as exc:
        return "retry", str(exc)
    except StatusRejected as exc:
        return "failed", str(exc)
    return answer.outcome, answer.message


@pytest.mark.parametrize("code, expected", [
    (200, "sent"), (299, "sent"), (300, "failed"), (400, "done"), (422, "done"), (423, "failed"),
    (408, "retry"), (409, "failed"), (429, "retry"), (430, "failed"), (499, "failed"), (500, "retry"),
    (501, "retry"),
])
def test_answers_at_each_boundary(gitea, code, expected):
    assert outcome(gitea, code)[0] == expected


@pytest.mark.parametrize("code, hint", [(401, True), (402, False), (403, True), (404, True), (405, False)])
def test_the_token_hint_on_a_refusal(gitea, code, hint):
    got, message = outcome(gitea, code)
    assert got == "failed" and message.startswith(str(code))
    assert ("(the token may not post statuses to this repository)" in message) is hint


# --- pull requests: fork by path when the payload has no repo ids ------------------------------

def pull(change) -> dict:
    doc = json.loads(load_payload("gitea/pull_request__woodpecker-synchronized.json")[0])
    pr = doc["pull_request"]
    for side in ("head", "base"):
        pr[side].pop("repo_id", None)
    change(pr)
    return doc


@pytest.mark.parametrize("head, fork", [
    ({"full_name": "acme/api"}, False), ({"full_name": "ACME/Api"}, False),
    ({"full_name": "someone/api"}, True), (None, True),           # None: a deleted fork
])
def test_fork_by_repository_path_without_repo_ids(head, fork):
    def change(pr):
        pr["base"]["repo"] = {"full_name": "acme/api"}
        pr["head"]["repo"] = head
    assert normalize(pull(change), "pull_request").fork is fork
