"""A GitHub comment's head, asked of the API (`github_api.Statuses.pull_head`) against the real
HTTP GitHub stand-in's `GET /repos/{owner}/{repo}/pulls/{number}`: the Event fields it returns,
what it sends, and how GitHub's answers are told apart: retried (5xx, 429, a 403 rate limit, with
GitHub's waits), failed (the others, with a hint for 401/403/404), a body that is no pull request."""
from __future__ import annotations

import pytest
from helpers.standins.github import GitHubAPIStandin

from bridge.errors import StatusRejected, StatusUnavailable
from bridge.providers.github import Statuses

TOKEN = "ghp_pullhead00000000000000000000000000001"
HEAD = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
HINT = " (the report: token may not read this repository)"


@pytest.fixture
def github():
    with GitHubAPIStandin(TOKEN) as s:
        yield s


def head(github, repo="acme/api", number=7):
    return Statuses(github.url, TOKEN, now=lambda: 1000.0).pull_head(repo, number)


def test_the_head_as_event_fields(github):
    github.add_pull("acme/api", 7, HEAD, head_ref="feature/x", base_ref="develop")
    assert head(github) == {"head_sha": HEAD, "sha": HEAD, "after": HEAD, "head_ref": "feature/x",
                            "base_ref": "develop", "head_repo": "acme/api", "fork": False, "state": "open"}
    (req,) = github.requests
    assert (req.method, req.path, req.body) == ("GET", "/repos/acme/api/pulls/7", b"")
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["accept"] == "application/vnd.github+json"
    assert req.headers["x-github-api-version"] == "2022-11-28"
    assert github.problems == []


def test_a_fork_a_closed_one_and_no_state(github):
    github.add_pull("acme/api", 7, HEAD, head_repo="mallory/api", state="closed")
    got = head(github)
    assert (got["fork"], got["head_repo"], got["state"]) == (True, "mallory/api", "closed")
    del github.pulls[("acme/api", 7)]["state"]
    github.pulls[("acme/api", 7)]["head"]["repo"] = None          # the fork was deleted
    got = head(github)
    assert (got["fork"], got["head_repo"], got["state"]) == (True, "", "open")


@pytest.mark.parametrize("head_repo, fork", [("mallory/api", True), ("ACME/Api", False)])
def test_without_repository_ids_a_fork_is_told_by_name(github, head_repo, fork):
    # Ids first (a renamed repository keeps its id); without them the full names, in any case.
    github.add_pull("acme/api", 7, HEAD, head_repo=head_repo)
    pull = github.pulls[("acme/api", 7)]
    del pull["head"]["repo"]["id"], pull["base"]["repo"]["id"]
    assert head(github)["fork"] is fork


def test_the_ids_decide_over_the_names(github):
    github.add_pull("acme/api", 7, HEAD)
    pull = github.pulls[("acme/api", 7)]
    pull["head"]["repo"]["id"], pull["base"]["repo"]["id"] = 1, 2     # same name, another repository
    assert head(github)["fork"] is True
    pull["head"]["repo"]["full_name"], pull["head"]["repo"]["id"] = "old-name/api", 2   # renamed, same id
    assert head(github)["fork"] is False


def test_the_owner_and_name_are_quoted_and_the_number_is_a_number(github):
    with pytest.raises(StatusRejected):
        head(github, "acme corp/api/x", "12")
    assert github.requests[0].path == "/repos/acme%20corp/api%2Fx/pulls/12"


@pytest.mark.parametrize("code, body, headers, error, retry_after, hinted", [
    (404, None, {}, StatusRejected, None, True),               # the stand-in's own: no such pull request
    (401, {"message": "Bad credentials"}, {}, StatusRejected, None, True),
    (403, {"message": "Resource not accessible by integration"}, {}, StatusRejected, None, True),
    (422, {"message": "Validation Failed"}, {}, StatusRejected, None, False),
    (400, {"message": "Problems parsing JSON"}, {}, StatusRejected, None, False),
    (410, {"message": "Gone"}, {}, StatusRejected, None, False),
    (201, {"message": "Created"}, {}, StatusRejected, None, False),
    (304, {"message": "Not Modified"}, {}, StatusRejected, None, False),
    (500, {"message": "Server Error"}, {"Retry-After": "3"}, StatusUnavailable, 3.0, False),
    (502, {"message": "Bad Gateway"}, {}, StatusUnavailable, None, False),
    (429, {"message": "slow down"}, {"Retry-After": "7"}, StatusUnavailable, 7.0, False),
    (403, {"message": "API rate limit exceeded"}, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1045"},
     StatusUnavailable, 45.0, False),
])
def test_answers_other_than_200(github, code, body, headers, error, retry_after, hinted):
    if code != 404:
        github.answer_next(code, body, headers=headers)
    with pytest.raises(error) as raised:
        head(github)
    exc = raised.value
    message = (body or {"message": "Not Found"})["message"]
    assert (exc.code, str(exc)) == (code, f"{code} {message}" + (HINT if hinted else ""))
    if error is StatusUnavailable:
        assert exc.retry_after == retry_after


@pytest.mark.parametrize("doc, problem", [
    ("<html>GitHub</html>", "Expecting value"),
    ({"number": 7, "state": "open"}, "pull_request.head.sha"),
    ({"number": 7, "head": {"sha": HEAD}, "base": {"ref": "main"}}, "pull_request.head.ref"),
    ({"number": 7, "head": {"sha": HEAD, "ref": "x"}, "base": {}}, "pull_request.base.ref"),
    ({"number": 7, "head": {"sha": HEAD, "ref": "x", "repo": {"full_name": 5}}, "base": {"ref": "main"}},
     "pull_request.head.repo.full_name"),
    ({"number": 7, "head": {"sha": HEAD, "ref": "x", "repo": "acme/api"}, "base": {"ref": "main"}},
     "pull_request.head.repo"),
    ({"number": 7, "state": 1, "head": {"sha": HEAD, "ref": "x", "repo": None}, "base": {"ref": "main"}},
     "pull_request.state"),
])
def test_a_body_that_is_no_pull_request(github, doc, problem):
    github.answer_next(200, doc)
    with pytest.raises(StatusRejected) as raised:
        head(github)
    assert raised.value.code == 200
    assert str(raised.value).startswith("GET /repos/acme/api/pulls/7: ") and problem in str(raised.value)


def test_the_problem_is_cut_at_200_characters(github):
    repo = "acme/" + "r" * 300
    github.answer_next(200, {"number": 7, "head": {"sha": "nope"}})
    with pytest.raises(StatusRejected) as raised:
        head(github, repo)
    what = f"GET /repos/{repo}/pulls/7"
    assert str(raised.value) == f"{what}: {what[:200]}"
