"""The commit-status clients at their edges, against the real HTTP stand-ins: which answer codes
count as sent (every 2xx, nothing else) and the API path a repo name with a slash too many makes."""
from __future__ import annotations

import pytest

from bridge.errors import StatusRejected, StatusUnavailable
from bridge.providers.github import Statuses as GitHubStatuses
from bridge.providers.gitlab import Statuses as GitLabStatuses
from helpers.statuses import GH_TOKEN, GL_TOKEN, SHA, github, gitlab, status  # noqa: F401  (fixtures)


class Got:
    """One post's result as the poster sees it: the Answer, or the status error raised."""

    def __init__(self, client, st):
        try:
            answer = client.post(st)
        except (StatusUnavailable, StatusRejected) as exc:
            self.outcome = "retry" if isinstance(exc, StatusUnavailable) else "failed"
            self.code, self.message = exc.code, str(exc)
            self.retry_after = getattr(exc, "retry_after", None)
        else:
            self.outcome, self.code, self.message = answer.outcome, answer.code, answer.message
            self.retry_after = answer.retry_after


@pytest.mark.parametrize("code, outcome", [(200, "sent"), (201, "sent"), (299, "sent"), (300, "failed")])
def test_github_every_2xx_and_nothing_else_is_sent(github, code, outcome):
    github.answer_next(code, {"message": "m"})
    answer = Got(GitHubStatuses(github.url, GH_TOKEN), status())
    assert (answer.outcome, answer.code) == (outcome, code)


@pytest.mark.parametrize("code, outcome", [(200, "sent"), (201, "sent"), (299, "sent"), (300, "failed")])
def test_gitlab_every_2xx_and_nothing_else_is_sent(gitlab, code, outcome):
    gitlab.answer_next(code, {"message": "m"})
    answer = Got(GitLabStatuses(gitlab.api_url, GL_TOKEN), status(provider="gitlab"))
    assert (answer.outcome, answer.code) == (outcome, code)


def test_github_a_slash_in_the_repo_name_stays_inside_the_repos_path(github):
    # GitHub repos are owner/name: a further '/' is part of the name, encoded, never a new path segment.
    Got(GitHubStatuses(github.url, GH_TOKEN), status(repo="acme/api/../../user"))
    assert github.requests[0].path == f"/repos/acme/api%2F..%2F..%2Fuser/statuses/{SHA}"


@pytest.mark.parametrize("code, hinted", [(401, True), (403, True), (404, True), (400, False), (402, False),
                                          (405, False)])
def test_github_only_auth_and_not_found_answers_blame_the_token(github, code, hinted):
    github.answer_next(code, {"message": "no"})
    answer = Got(GitHubStatuses(github.url, GH_TOKEN), status())
    assert answer.outcome == "failed"
    assert answer.message == f"{code} no" + (" (the token may not post statuses to this repository)" if hinted else "")


@pytest.mark.parametrize("code, hinted", [(401, True), (403, True), (404, True), (400, False), (402, False),
                                          (405, False)])
def test_gitlab_only_auth_and_not_found_answers_blame_the_token(gitlab, code, hinted):
    gitlab.answer_next(code, {"message": "no"})
    answer = Got(GitLabStatuses(gitlab.api_url, GL_TOKEN), status(provider="gitlab"))
    assert answer.outcome == "failed"
    assert answer.message == f"{code} no" + (" (the token may not post statuses to this project)" if hinted else "")


def test_github_reads_rate_limit_words_in_the_first_2000_characters_only(github):
    # A 403 is a rate limit when its text says so early; what lies further is not read.
    within = "x" * 1990 + "rate limit"            # ends at character 2,000
    beyond = "x" * 1991 + "rate limit"            # its last letter is character 2,001
    github.answer_next(403, within)
    assert Got(GitHubStatuses(github.url, GH_TOKEN), status()).outcome == "retry"
    github.answer_next(403, beyond)
    assert Got(GitHubStatuses(github.url, GH_TOKEN), status()).outcome == "failed"


@pytest.mark.parametrize("code, headers, outcome, retry_after", [
    (429, {"Retry-After": "7"}, "retry", 7.0), (409, {}, "retry", None), (500, {}, "retry", None),
    (410, {}, "failed", None), (430, {}, "failed", None)])
def test_gitlab_throttling_conflicts_and_server_errors_are_retried(gitlab, code, headers, outcome, retry_after):
    gitlab.answer_next(code, {"message": "m"}, headers=headers)
    answer = Got(GitLabStatuses(gitlab.api_url, GL_TOKEN, now=lambda: 1000.0), status(provider="gitlab"))
    assert (answer.outcome, answer.code, answer.retry_after) == (outcome, code, retry_after)
