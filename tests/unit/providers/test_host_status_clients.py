"""The Gitea/Forgejo and Bitbucket Cloud commit-status clients against real HTTP stand-ins
written from the hosts' API docs: what each host is sent (path, auth, body in its own words), and
how its answers are classified (sent, done, retried with Retry-After, failed)."""
from __future__ import annotations

import base64
import json

import pytest
from helpers.standins.bitbucket import BitbucketAPIStandin
from helpers.standins.gitea import GiteaAPIStandin
from helpers.statuses import SHA, status

from bridge import providers
from bridge.providers.status import StatusClient
from bridge.errors import StatusRejected, StatusUnavailable
from bridge.providers.bitbucket import COMMIT_PAGE
from bridge.providers.bitbucket import Statuses as BitbucketStatuses
from bridge.providers.gitea import ForgejoStatuses, GiteaStatuses

TOKEN = "gitea-token-0001"


def outcome(client, st):
    """(outcome, code, message, retry_after) of one post: the Answer, or the status error raised
    (StatusUnavailable: retry, StatusRejected: failed), as the poster records it."""
    try:
        answer = client.post(st)
    except StatusUnavailable as exc:
        return "retry", exc.code, str(exc), exc.retry_after
    except StatusRejected as exc:
        return "failed", exc.code, str(exc), None
    return answer.outcome, answer.code, answer.message, answer.retry_after


@pytest.fixture
def gitea():
    with GiteaAPIStandin(TOKEN) as s:
        yield s


@pytest.fixture
def bitbucket():
    with BitbucketAPIStandin("bb-token-0001") as s:
        yield s


@pytest.mark.parametrize("ours, theirs", [("pending", "pending"), ("running", "pending"),
                                          ("success", "success"), ("failure", "failure"),
                                          ("canceled", "error"), ("error", "error")])
def test_gitea_states_and_request(gitea, ours, theirs):
    client = GiteaStatuses(gitea.api_url, TOKEN)
    answer = client.post(status(ours, url="http://ci/job/1/", provider="gitea"))
    assert (answer.outcome, answer.code) == ("sent", 201)
    (req,) = gitea.requests
    assert (req.method, req.path) == ("POST", f"/api/v1/repos/acme/api/statuses/{SHA}")
    assert req.headers["authorization"] == f"token {TOKEN}"
    assert json.loads(req.body) == {"state": theirs, "context": "bridge/build", "description": "queued",
                                    "target_url": "http://ci/job/1/"}
    assert gitea.problems == []


def test_forgejo_uses_the_same_api(gitea):
    assert ForgejoStatuses(gitea.api_url, TOKEN).post(status("success")).outcome == "sent"
    assert providers.status_client("forgejo", gitea.api_url, TOKEN).provider == "forgejo"
    assert gitea.statuses[0].state == "success" and gitea.problems == []


@pytest.mark.parametrize("code, body, headers, expected, retry_after", [
    (422, {"message": "[State]: invalid"}, {}, "done", None),
    (429, {"message": "slow down"}, {"Retry-After": "7"}, "retry", 7.0),
    (500, {"message": "Server Error"}, {}, "retry", None),
    (401, {"message": "token is required"}, {}, "failed", None),
    (404, {"message": "Not Found"}, {}, "failed", None),
])
def test_gitea_answers_are_classified(gitea, code, body, headers, expected, retry_after):
    gitea.answer_next(code, body, headers=headers)
    got, got_code, message, wait = outcome(GiteaStatuses(gitea.api_url, TOKEN, now=lambda: 1000.0),
                                           status())
    assert (got, got_code, wait) == (expected, code, retry_after)
    assert TOKEN not in message and message.startswith(str(code))


@pytest.mark.parametrize("ours, theirs", [("pending", "INPROGRESS"), ("running", "INPROGRESS"),
                                          ("success", "SUCCESSFUL"), ("failure", "FAILED"),
                                          ("canceled", "STOPPED"), ("error", "FAILED")])
def test_bitbucket_states_and_request(bitbucket, ours, theirs):
    client = BitbucketStatuses(bitbucket.api_url, "bb-token-0001")
    assert client.post(status(ours, url="http://ci/job/1/", provider="bitbucket")).outcome == "sent"
    (req,) = bitbucket.requests
    assert req.path == f"/2.0/repositories/acme/api/commit/{SHA}/statuses/build"
    assert req.headers["authorization"] == "Bearer bb-token-0001"
    assert json.loads(req.body) == {"key": "bridge/build", "name": "bridge/build", "state": theirs,
                                    "description": "queued", "url": "http://ci/job/1/", "refname": "main"}
    assert bitbucket.problems == []


def test_bitbucket_key_per_rule_overwrites_and_url_is_always_sent(bitbucket):
    client = BitbucketStatuses(bitbucket.api_url, "bb-token-0001")
    client.post(status("pending"))                           # no build URL yet: the commit page
    client.post(status("success", url="http://ci/job/2/"))
    client.post(status("pending", context="ci/docs"))
    assert bitbucket.statuses[0].target_url == COMMIT_PAGE
    assert bitbucket.current == {("acme/api", SHA, "bridge/build"): "SUCCESSFUL",
                                 ("acme/api", SHA, "ci/docs"): "INPROGRESS"}
    assert bitbucket.problems == []


def test_bitbucket_app_password_goes_as_basic_auth():
    with BitbucketAPIStandin("ci-bot:app-pass-123") as bb:
        assert BitbucketStatuses(bb.api_url, "ci-bot:app-pass-123").post(status()).outcome == "sent"
        assert bb.requests[0].headers["authorization"] == \
            "Basic " + base64.b64encode(b"ci-bot:app-pass-123").decode()


@pytest.mark.parametrize("code, body, headers, expected, retry_after", [
    (400, {"type": "error", "error": {"message": "url: This field is required."}}, {}, "done", None),
    (429, {"type": "error", "error": {"message": "Rate limit"}}, {"Retry-After": "30"}, "retry", 30.0),
    (503, "<html>unavailable</html>", {}, "retry", None),
    (403, {"type": "error", "error": {"message": "Forbidden"}}, {}, "failed", None),
])
def test_bitbucket_answers_are_classified(bitbucket, code, body, headers, expected, retry_after):
    bitbucket.answer_next(code, body, headers=headers)
    got, got_code, message, wait = outcome(
        BitbucketStatuses(bitbucket.api_url, "bb-token-0001", now=lambda: 1000.0), status())
    assert (got, got_code, wait) == (expected, code, retry_after)
    if isinstance(body, dict):
        assert body["error"]["message"] in message


def test_host_view_in_each_hosts_words():
    assert providers.host_view({"provider": "bitbucket", "state": "canceled", "post_state": "sent"}) == {
        "host_state": "STOPPED", "received": True}
    assert providers.host_view({"provider": "gitea", "state": "running"})["host_state"] == "pending"


@pytest.mark.parametrize("name", providers.names())
def test_a_host_asks_for_pull_heads_exactly_when_its_client_implements_it(name):
    """dispatch/pulls.py asks a pull request's head only of a client that says it can; a client
    that cannot refuses for good instead of answering nothing."""
    client = providers.status_client(name, "http://127.0.0.1:9", "t")
    own = type(client).pull_head is not StatusClient.pull_head
    assert client.asks_pull_heads == own
    if not own:
        with pytest.raises(StatusRejected):
            client.pull_head("acme/api", 1)
