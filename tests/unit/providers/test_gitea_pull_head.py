"""A Gitea/Forgejo comment's head, asked of the API (`GiteaStatuses.pull_head`) against a real HTTP
stand-in of `GET /api/v1/repos/{owner}/{repo}/pulls/{index}` written from Gitea's API docs: the
Event fields it returns (head, refs, head repository, fork by repo_id or by path, state), what it
sends (path, token), and how the answers are told apart: retried (408, 429, 5xx), failed (the
others, with a hint for 401/403/404), a body that is no pull request."""
from __future__ import annotations

import pytest
from helpers.standins.gitea import GiteaAPIStandin

from bridge import providers
from bridge.errors import StatusRejected, StatusUnavailable
from bridge.providers.gitea import ForgejoStatuses, GiteaStatuses

TOKEN = "gitea-token-0002"
HEAD = "5b88b61dbedba1acefb5a65b42114bfef773e18e"


@pytest.fixture
def gitea():
    with GiteaAPIStandin(TOKEN) as s:
        yield s


def head(gitea, repo="acme/api", number=7, **kw):
    return GiteaStatuses(gitea.api_url, TOKEN, now=lambda: 1000.0, **kw).pull_head(repo, number)


def test_the_head_as_event_fields(gitea):
    gitea.add_pull("acme/api", 7, HEAD, head_ref="feature/x", base_ref="develop")
    assert head(gitea) == {"head_sha": HEAD, "sha": HEAD, "after": HEAD, "head_ref": "feature/x",
                           "base_ref": "develop", "head_repo": "acme/api", "fork": False, "state": "open"}
    (req,) = gitea.requests
    assert (req.method, req.path, req.body) == ("GET", "/api/v1/repos/acme/api/pulls/7", b"")
    assert req.headers["authorization"] == f"token {TOKEN}"
    assert req.headers["accept"] == "application/json"
    assert gitea.problems == []


def test_forgejo_asks_the_same_api(gitea):
    gitea.add_pull("root/example", 2, HEAD, state="closed", merged=True)
    client = providers.status_client("forgejo", gitea.api_url, TOKEN)
    assert isinstance(client, ForgejoStatuses)
    got = client.pull_head("root/example", 2)
    assert (got["sha"], got["state"]) == (HEAD, "closed")
    assert gitea.problems == []


def test_owner_and_name_are_quoted_and_the_index_is_a_number(gitea):
    gitea.add_pull("acme corp/api#2", 12, HEAD)
    assert head(gitea, "acme corp/api#2", "12")["sha"] == HEAD
    assert gitea.requests[0].path == "/api/v1/repos/acme%20corp/api%232/pulls/12"


def test_the_name_is_one_path_segment(gitea):
    # Split once at the owner: a '/' after it is part of the name, sent encoded (Gitea then
    # answers 404 for a name it cannot hold, rather than another repository's pull request).
    with pytest.raises(StatusRejected):
        head(gitea, "acme/api/pulls/7/x")
    assert gitea.requests[0].path == "/api/v1/repos/acme/api%2Fpulls%2F7%2Fx/pulls/7"


@pytest.mark.parametrize("head_repo, repo_ids, fork, shown", [
    ("mallory/api", True, True, "mallory/api"),        # another repository: repo_id differs
    ("", True, True, ""),                              # the head repository was deleted (repo_id 0, repo null)
    ("ACME/API", False, False, "ACME/API"),            # no repo_ids (Gitea < 1.12): by path, any case
    ("mallory/api", False, True, "mallory/api"),
])
def test_a_fork(gitea, head_repo, repo_ids, fork, shown):
    gitea.add_pull("acme/api", 7, HEAD, head_repo=head_repo, repo_ids=repo_ids)
    got = head(gitea)
    assert (got["fork"], got["head_repo"]) == (fork, shown)


def test_the_same_repository_by_path_when_the_ids_are_zero(gitea):
    doc = gitea.add_pull("acme/api", 7, HEAD)
    doc["head"]["repo_id"] = doc["base"]["repo_id"] = 0
    assert head(gitea)["fork"] is False
    doc["head"]["repo"]["full_name"] = "mallory/api"
    assert head(gitea)["fork"] is True


@pytest.mark.parametrize("state", ["closed", "open"])
def test_its_state(gitea, state):
    gitea.add_pull("acme/api", 7, HEAD, state=state)
    assert head(gitea)["state"] == state


def test_no_state_is_open(gitea):
    del gitea.add_pull("acme/api", 7, HEAD)["state"]
    assert head(gitea)["state"] == "open"


@pytest.mark.parametrize("code, body, headers, error, retry_after, hint", [
    (404, None, {}, StatusRejected, None, True),            # the stand-in's own: no such pull request
    (401, {"message": "token is required"}, {}, StatusRejected, None, True),
    (403, {"message": "user should have a permission"}, {}, StatusRejected, None, True),
    (400, {"message": "bad index"}, {}, StatusRejected, None, False),
    (422, {"message": "invalid"}, {}, StatusRejected, None, False),
    (409, {"message": "conflict"}, {}, StatusRejected, None, False),
    (407, {"message": "proxy"}, {}, StatusRejected, None, False),
    (428, {"message": "precondition"}, {}, StatusRejected, None, False),
    (499, {"message": "closed"}, {}, StatusRejected, None, False),
    (408, {"message": "timeout"}, {}, StatusUnavailable, None, False),
    (429, {"message": "slow down"}, {"Retry-After": "7"}, StatusUnavailable, 7.0, False),
    (500, {"message": "Server Error"}, {}, StatusUnavailable, None, False),
    (503, {"message": "down"}, {"Retry-After": "30"}, StatusUnavailable, 30.0, False),
    (302, {"message": "moved"}, {"Location": "/login"}, StatusRejected, None, False),
    (201, {"message": "created"}, {}, StatusRejected, None, False),
])
def test_answers_other_than_200(gitea, code, body, headers, error, retry_after, hint):
    if code != 404:
        gitea.answer_next(code, body, headers=headers)
    with pytest.raises(error) as raised:
        head(gitea)
    exc = raised.value
    message = (body or {"message": "The target couldn't be found."})["message"]
    want = f"{code} {message}" + (" (the report: token may not read this repository)" if hint else "")
    assert (exc.code, str(exc)) == (code, want)
    if error is StatusUnavailable:
        assert exc.retry_after == retry_after
    assert TOKEN not in str(exc)


def test_a_wrong_token_is_refused_by_the_host(gitea):
    gitea.add_pull("acme/api", 7, HEAD)
    with pytest.raises(StatusRejected) as raised:
        GiteaStatuses(gitea.api_url, "not-the-token").pull_head("acme/api", 7)
    assert raised.value.code == 401
    assert str(raised.value) == "401 token is required (the report: token may not read this repository)"


@pytest.mark.parametrize("doc, problem", [
    ("<html>Gitea</html>", "Expecting value"),                                  # no JSON
    ({"number": 7, "state": "open"}, "pull_request.head.sha"),                  # no head
    ({"number": 7, "head": {"sha": "nope", "ref": "x"}, "base": {"ref": "main"}}, "pull_request.head.sha"),
    ({"number": 7, "head": {"sha": HEAD}, "base": {"ref": "main"}}, "pull_request.head.ref"),
    ({"number": 7, "head": {"sha": HEAD, "ref": "x"}, "base": {}}, "pull_request.base.ref"),
    ({"number": 7, "head": {"sha": HEAD, "ref": "x", "repo": {"full_name": 5}}, "base": {"ref": "main"}},
     "pull_request.head.repo.full_name"),
    ({"number": 7, "head": {"sha": HEAD, "ref": "x", "repo_id": "3"}, "base": {"ref": "main"}},
     "'head.repo_id' is not an integer"),
    ({"number": 7, "state": 1, "head": {"sha": HEAD, "ref": "x", "repo_id": 3},
      "base": {"ref": "main", "repo_id": 3}}, "pull_request.state"),
])
def test_a_body_that_is_no_pull_request(gitea, doc, problem):
    gitea.answer_next(200, doc)
    with pytest.raises(StatusRejected) as raised:
        head(gitea)
    assert raised.value.code == 200
    assert str(raised.value).startswith("GET /repos/acme/api/pulls/7: ")
    assert problem in str(raised.value)


def test_the_problem_is_cut_at_200_characters(gitea):
    # The reason lands in the job's row and log line: a host's long name or value is cut.
    repo = "acme/" + "r" * 300
    gitea.answer_next(200, {"number": 7, "head": {"sha": "nope"}})
    with pytest.raises(StatusRejected) as raised:
        head(gitea, repo)
    what = f"GET /repos/{repo}/pulls/7"
    assert str(raised.value) == f"{what}: {what[:200]}"     # the problem named the field after it
