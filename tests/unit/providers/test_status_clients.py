"""The GitHub and GitLab commit-status API clients against real HTTP stand-ins: what each host is
sent, how its answers are classified (sent or done; StatusUnavailable to retry, StatusRejected to
give up), and final states per target."""
from __future__ import annotations

import json

import pytest

from bridge.dispatch.statuses import final_state
from bridge.errors import StatusRejected, StatusUnavailable
from bridge.providers.github import Statuses as GitHubStatuses
from bridge.providers.gitlab import Statuses as GitLabStatuses
from bridge.jobs import Run
from helpers.standins.github import GitHubAPIStandin
from helpers.statuses import GH_TOKEN, GL_TOKEN, SHA, github, gitlab, status  # noqa: F401  (fixtures)

_OUTCOMES = {StatusUnavailable: "retry", StatusRejected: "failed"}


def outcome(client, st):
    """(outcome, code, message, retry_after) of one post: the Answer, or the status error raised
    (retry: StatusUnavailable, failed: StatusRejected), as the poster records it."""
    try:
        answer = client.post(st)
    except (StatusUnavailable, StatusRejected) as exc:
        return _OUTCOMES[type(exc)], exc.code, str(exc), getattr(exc, "retry_after", None)
    return answer.outcome, answer.code, answer.message, answer.retry_after


# --- the clients ---------------------------------------------------------------------------------

def test_github_post_sends_the_status_as_github_expects(github):
    client = GitHubStatuses(github.url, GH_TOKEN)
    long = "could not start the build: " + "x" * 200
    assert client.post(status("running", description=long, url="http://ci/job/1/")).outcome == "sent"
    assert client.post(status("canceled", description="build canceled (ABORTED)")).outcome == "sent"
    (first, second) = github.requests
    assert (first.method, first.path) == ("POST", f"/repos/acme/api/statuses/{SHA}")
    assert first.headers["authorization"] == f"Bearer {GH_TOKEN}"
    body = json.loads(first.body)
    assert body == {"state": "pending", "context": "bridge/build", "target_url": "http://ci/job/1/",
                    "description": body["description"]}
    assert len(body["description"]) == 140 and body["description"].endswith("\u2026")
    assert json.loads(second.body)["state"] == "error" and "target_url" not in json.loads(second.body)
    assert github.problems == []


def test_github_enterprise_api_prefix(tmp_path):
    with GitHubAPIStandin(GH_TOKEN, prefix="/api/v3") as ghes:
        answer = GitHubStatuses(ghes.url + "/", GH_TOKEN).post(status("success"))
        assert (answer.outcome, answer.code) == ("sent", 201)
        assert ghes.requests[0].path == f"/api/v3/repos/acme/api/statuses/{SHA}"


@pytest.mark.parametrize("code, body, headers, expected, retry_after", [
    (422, {"message": f"No commit found for SHA: {SHA}"}, {}, "done", None),
    (429, {"message": "slow down"}, {"Retry-After": "7"}, "retry", 7.0),
    (429, {"message": "API rate limit exceeded for installation"},
     {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1045"}, "retry", 45.0),
    (429, {"message": "slow down"},
     {"Retry-After": "5", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1045"}, "retry", 5.0),
    (403, {"message": "API rate limit exceeded for user"},
     {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1090"}, "retry", 90.0),
    (403, {"message": "You have exceeded a secondary rate limit"}, {"Retry-After": "60"}, "retry", 60.0),
    (403, {"message": "Resource not accessible by integration"}, {}, "failed", None),
    (404, {"message": "Not Found"}, {}, "failed", None),
    (500, {"message": "Server Error"}, {}, "retry", None),
    (502, "<html>bad gateway</html>", {}, "retry", None),
])
def test_github_answers_are_classified(github, code, body, headers, expected, retry_after):
    github.answer_next(code, body, headers=headers)
    got, got_code, message, wait = outcome(GitHubStatuses(github.url, GH_TOKEN, now=lambda: 1000.0),
                                           status())
    assert (got, got_code, wait) == (expected, code, retry_after)
    assert message.startswith(str(code))


def test_github_unknown_commit_and_bad_token_are_not_retried(tmp_path):
    with GitHubAPIStandin(GH_TOKEN, known_shas={"a" * 40}) as gh:
        unknown = GitHubStatuses(gh.url, GH_TOKEN).post(status())
        assert (unknown.outcome, unknown.code) == ("done", 422)
        assert unknown.message == f"422 No commit found for SHA: {SHA}"
        with pytest.raises(StatusRejected) as bad:
            GitHubStatuses(gh.url, "ghp_wrong").post(status(sha="a" * 40))
        assert bad.value.code == 401
        assert "Bad credentials" in str(bad.value) and "ghp_wrong" not in str(bad.value)


def test_timeouts_and_refused_connections_are_retried(github):
    github.hang_next(1.0)
    with pytest.raises(StatusUnavailable) as timeout:
        GitHubStatuses(github.url, GH_TOKEN, timeout=0.2).post(status())
    assert (timeout.value.code, timeout.value.retry_after) == (None, None)
    assert str(timeout.value) == "no answer from 127.0.0.1:%d within 0.2s" % github.port
    url = github.url
    github.stop()
    with pytest.raises(StatusUnavailable) as refused:
        GitHubStatuses(url, GH_TOKEN).post(status())
    assert str(refused.value).startswith("cannot connect to 127.0.0.1")


def test_gitlab_post_encodes_the_project_path_and_names_the_status(gitlab):
    client = GitLabStatuses(gitlab.api_url, GL_TOKEN)
    for state in ("pending", "running", "failure"):
        assert client.post(status(state, repo="group/sub/proj", ref="release/1.x",
                                  url="http://ci/1/")).outcome == "sent"
    first = gitlab.requests[0]
    assert first.path == f"/api/v4/projects/group%2Fsub%2Fproj/statuses/{SHA}"
    assert first.headers["private-token"] == GL_TOKEN and "authorization" not in first.headers
    assert json.loads(first.body) == {"state": "pending", "name": "bridge/build", "ref": "release/1.x",
                                      "description": "queued", "target_url": "http://ci/1/"}
    assert [s.state for s in gitlab.statuses] == ["pending", "running", "failed"]
    assert gitlab.problems == []


def test_gitlab_same_state_twice_is_done_and_conflicts_are_retried(gitlab):
    client = GitLabStatuses(gitlab.api_url, GL_TOKEN)
    assert client.post(status("running")).outcome == "sent"
    again = client.post(status("running"))
    assert (again.outcome, again.code) == ("done", 400)
    assert "Cannot transition status via :run from :running" in again.message
    gitlab.answer_next(409, {"message": "409 Conflict"})
    with pytest.raises(StatusUnavailable) as conflict:
        client.post(status("success"))
    assert conflict.value.code == 409
    gitlab.answer_next(400, {"message": {"base": ["unknown"]}})
    with pytest.raises(StatusRejected) as refused:
        client.post(status("success"))
    assert refused.value.code == 400
    assert client.post(status("canceled")).outcome == "sent"
    assert gitlab.states() == ["running", "canceled"]


@pytest.mark.parametrize("state, detail, expected", [
    ("succeeded", {"result": "SUCCESS"}, ("success", "build succeeded")),
    ("failed", {"result": "UNSTABLE"}, ("failure", "build failed (UNSTABLE)")),
    ("failed", {"result": "ABORTED"}, ("canceled", "build canceled (ABORTED)")),
    ("failed", {"status": "FAULT"}, ("error", "build error (FAULT)")),
    ("failed", {"result": "UNKNOWN", "reason": "queue item 4 vanished"},
     ("error", "build error (queue item 4 vanished)")),
    ("failed", {"status": "TIMED_OUT"}, ("failure", "build failed (TIMED_OUT)")),
    ("failed", {"exit_code": 2}, ("failure", "build failed (exit code 2)")),
])
def test_final_states_from_jenkins_codebuild_and_exec(state, detail, expected):
    assert final_state(Run("1", state=state, detail=detail)) == expected
