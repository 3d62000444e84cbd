"""GitHub Actions' `on: pull_request`, table-driven: types (default opened, synchronize,
reopened), base branches (branches / branches-ignore filter the BASE), forks (skip by default,
run, authors), drafts (built, as Actions does), skip markers, and paths on the three-dot diff
computed in a real git repository's mirror (a file changed on the base after the branch point is
not in the diff)."""
from __future__ import annotations

import json
import textwrap

import pytest
from helpers.mirrors import make_upstream, mirrors  # noqa: F401 - fixtures

from bridge.config.load import load_config
from bridge.dispatch.changes import resolve_changed_files
from bridge.events import Event
from bridge.providers import github
from bridge.rules import decide_paths
from helpers.pulls import issue_comment

HEAD = "c" * 40


def pull(action="opened", base="main", head_ref="feature", fork=False, draft=False, author="octocat",
         association="CONTRIBUTOR", message="", number=7, head=HEAD, url="", repo="acme/api") -> Event:
    return Event(provider="github", source="github", delivery_id="d-1", kind="pull_request", repo=repo,
                 ref=f"refs/pull/{number}/head", ref_name=f"pull/{number}/head", before="", after=head,
                 sha=head, commits=(), commits_complete=False, pusher=author, default_branch="main",
                 clone_urls=(url,) if url else (), head_message=message, number=number,
                 action=action, host_action=action, base_ref=base, head_ref=head_ref, head_sha=head,
                 head_repo="someone/api" if fork else repo, fork=fork, draft=draft, author=author,
                 author_association=association)


def rule(tmp_path, on: str):
    text = textwrap.dedent("""\
    sources:
      github: {provider: github, secrets: ["${env:S}"]}
    targets:
      mem: {kind: memory}
    rules:
      - name: r
        on: %s
        run: {target: mem, parameters: {N: "${number}", SHA: "${head_sha}"}}
    """) % on
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_config(path, environ={"S": "x"}).ruleset


PR = "{repo: acme/api, pull_request: %s}"
CASES = [
    # (on, event kwargs, matched, reason)
    # types: the default is opened, synchronize, reopened
    (PR % "{}", {}, True, "pull request #7 opened"),
    (PR % "{}", {"action": "synchronize"}, True, "pull request #7 synchronize"),
    (PR % "{}", {"action": "reopened"}, True, "pull request #7 reopened"),
    (PR % "{}", {"action": "closed"}, False,
     "pull request #7 action 'closed' is not in pull_request.types [opened, synchronize, reopened]"),
    (PR % "{}", {"action": "edited"}, False,
     "pull request #7 action 'edited' is not in pull_request.types [opened, synchronize, reopened]"),
    (PR % "null", {"action": "labeled"}, False,
     "pull request #7 action 'labeled' is not in pull_request.types [opened, synchronize, reopened]"),
    (PR % "{types: [closed]}", {"action": "closed"}, True, "pull request #7 closed"),
    (PR % "{types: labeled}", {"action": "labeled"}, True, "pull request #7 labeled"),
    (PR % "{types: [ready_for_review]}", {"action": "opened"}, False,
     "pull request #7 action 'opened' is not in pull_request.types [ready_for_review]"),
    # branches filter the base (target) branch, never the head branch
    (PR % "{branches: [main]}", {}, True, "pull request #7 opened"),
    (PR % "{branches: [main]}", {"base": "develop", "head_ref": "main"}, False,
     "pull request #7 base branch 'develop' is not in pull_request.branches [main]"),
    (PR % "{branches: ['release/**']}", {"base": "release/1.x"}, True, "pull request #7 opened"),
    (PR % "{branches: ['release/**', '!release/old']}", {"base": "release/old"}, False,
     "pull request #7 base branch 'release/old' is not in pull_request.branches [release/**, !release/old]"),
    (PR % "{branches-ignore: ['wip/*']}", {"base": "wip/x"}, False,
     "pull request #7 base branch 'wip/x' is in pull_request.branches-ignore [wip/*] ('wip/*')"),
    (PR % "{branches-ignore: ['wip/*']}", {"head_ref": "wip/x"}, True, "pull request #7 opened"),
    # forks: skip (the default), run, or some authors
    (PR % "{}", {"fork": True}, False,
     "pull request #7 comes from the fork 'someone/api'; forks: skip (the default: a fork's author "
     "gets no build with this target's credentials; forks: run or forks: {authors: [...]} opts in)"),
    ("{repo: acme/api, pull_request: {}, forks: run}", {"fork": True}, True, "pull request #7 opened"),
    ("{repo: acme/api, pull_request: {}, forks: {authors: [MEMBER]}}",
     {"fork": True, "association": "MEMBER"}, True, "pull request #7 opened"),
    ("{repo: acme/api, pull_request: {}, forks: {authors: [MEMBER, trusted]}}",
     {"fork": True, "association": "NONE", "author": "trusted"}, True, "pull request #7 opened"),
    ("{repo: acme/api, pull_request: {}, forks: {authors: [MEMBER]}}",
     {"fork": True, "association": "FIRST_TIME_CONTRIBUTOR", "author": "eve"}, False,
     "pull request #7 comes from the fork 'someone/api' by 'eve' (FIRST_TIME_CONTRIBUTOR), who is not "
     "in forks.authors [MEMBER]"),
    (PR % "{}", {"fork": False, "association": "NONE"}, True, "pull request #7 opened"),
    # drafts build, as in Actions (a rule can leave ready_for_review in its types)
    (PR % "{}", {"draft": True}, True, "pull request #7 opened"),
    (PR % "{types: [ready_for_review]}", {"action": "ready_for_review"}, True,
     "pull request #7 ready_for_review"),
    # skip markers in the head commit's message (GitLab sends it; GitHub's payload does not)
    (PR % "{}", {"message": "wip [skip ci]"}, False, "head commit message contains '[skip ci]'"),
    (PR % "{}", {"message": "x\n\nskip-checks: true"}, False, "head commit message contains 'skip-checks: true'"),
    # push filters never see a pull request, and a push rule does not take one
    ("{repo: acme/api, branches: [main]}", {}, False,
     "a pull request; the rule has no on.pull_request (events [push, tag])"),
    # paths: decided later, on the three-dot diff
    (PR % "{paths: ['src/**']}", {}, True,
     "pull request #7 opened; changed files (three-dot diff against the base) resolved before the build"),
]


@pytest.mark.parametrize("on, kwargs, matched, reason", CASES)
def test_pull_request_table(tmp_path, on, kwargs, matched, reason):
    [verdict] = rule(tmp_path, on).explain(pull(**kwargs))
    assert (verdict.matched, verdict.reason) == (matched, reason)
    if matched:
        [job] = verdict.jobs
        assert job.request["parameters"] == {"N": "7", "SHA": HEAD}
        assert job.needs_files == ("paths" in on)


@pytest.fixture
def diverged(make_upstream):  # noqa: F811
    """main: base.txt; feature branches off, changes src/app.py and docs/feature.md; then main
    moves on and changes docs/after.md. The host serves the head at refs/pull/7/head."""
    up = make_upstream()
    up.commit({"base.txt": "1", "docs/after.md": "0", "src/app.py": "0"}, "start")
    up.git("checkout", "-q", "-b", "feature")
    up.commit({"src/app.py": "1"}, "feature work")
    head = up.commit({"docs/feature.md": "1"}, "feature docs")
    up.git("checkout", "-q", "main")
    up.commit({"docs/after.md": "1"}, "main moves on after the branch point")
    up.git("update-ref", "refs/pull/7/head", head)
    up.git("branch", "-D", "feature")          # a fork's branch is not in the base repository
    return up, head


PATHS = [
    # (pull_request paths filter, matched, reason)
    ("paths: ['src/**']", True, "file 'src/app.py' matches paths [src/**]"),
    ("paths: ['docs/after.md']", False,         # changed on the base only: not in the diff
     "no changed file matches paths [docs/after.md] (2 files changed)"),
    ("paths-ignore: ['docs/**']", True, "file 'src/app.py' is not in paths-ignore [docs/**]"),
    ("paths-ignore: ['docs/**', 'src/**']", False,
     "every changed file is in paths-ignore [docs/**, src/**] (2 files changed)"),
]


@pytest.mark.parametrize("spec, matched, reason", PATHS, ids=["src", "base-only", "ignore-docs", "ignore-all"])
def test_paths_are_the_three_dot_diff_in_a_real_repository(tmp_path, diverged, mirrors, spec,  # noqa: F811
                                                           matched, reason):
    up, head = diverged
    event = pull(head=head, url=up.url)
    resolution = resolve_changed_files(event, mirrors, url=up.url)
    assert resolution.source == "mirror", resolution.reason
    assert resolution.files == {"src/app.py", "docs/feature.md"}      # not docs/after.md
    assert resolution.reason.endswith(f"git diff main...{head[:12]} (merge base "
                                      f"{up.rev('main~1')[:12]}) in the mirror of {up.url}")
    [verdict] = rule(tmp_path, PR % "{%s}" % spec).explain(event)
    assert verdict.needs_files
    run, why = decide_paths(verdict.jobs[0].path_filter, resolution)
    assert (run, why) == (matched, f"{reason} (files from mirror)")


def test_a_pull_request_whose_head_is_gone_from_the_host_is_unknown(tmp_path, diverged, mirrors):  # noqa: F811
    up, head = diverged
    up.git("update-ref", "-d", "refs/pull/7/head")
    resolution = resolve_changed_files(pull(head=head, url=up.url), mirrors, url=up.url)
    assert resolution.files is None and resolution.source == "unknown"
    assert "refs/pull/7/head is not on" in resolution.reason
    [verdict] = rule(tmp_path, PR % "{paths: ['src/**']}").explain(pull(head=head))
    assert decide_paths(verdict.jobs[0].path_filter, resolution)[0] is True     # on_unknown_files: run


@pytest.mark.parametrize("action, matched", [("opened", True), ("closed", False)])
def test_events_pull_request_alone_takes_the_default_types(tmp_path, action, matched):
    # `events: [pull_request]` without a `pull_request:` key: the same as `pull_request: {}`.
    [verdict] = rule(tmp_path, "{repo: acme/api, events: [pull_request]}").match(pull(action=action))
    assert verdict.matched is matched
    stopped = None if matched else {"clause": "pull_request.types", "value": "closed",
                                    "patterns": ["opened", "synchronize", "reopened"]}
    assert verdict.to_dict().get("stopped_by") == stopped


def test_a_refused_comment_names_its_clause(tmp_path):
    event = github.normalize({"X-GitHub-Event": "issue_comment", "Content-Type": "application/json"},
                             json.dumps(issue_comment(body="looks good")).encode(), source="github",
                             delivery_id="d-1")
    [verdict] = rule(tmp_path, '{repo: acme/api, comment: {pattern: "^/retest"}}').match(event)
    assert verdict.matched is False
    assert verdict.to_dict()["stopped_by"]["clause"].startswith("comment")
