"""rules.yaml validation of `on.pull_request`, `on.forks` and `on.comment`: every problem at once,
each with its line and the rule's name."""
import textwrap

import pytest

from bridge.config.load import load_config
from bridge.errors import ConfigError

HEAD = """\
sources:
  github: {provider: github, secrets: ["${env:S}"]}
targets:
  mem: {kind: memory}
rules:
"""


def problems(tmp_path, rules: str) -> list[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(rules), "  "), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"S": "x"})
    return info.value.problems


def test_pull_request_forks_and_comment_problems_at_once(tmp_path):
    assert problems(tmp_path, """\
    - name: a
      on: {repo: x, pull_request: {types: [opend], branch: [main]}, branches: [main]}
      run: {target: mem}
    - name: b
      on: {repo: x, pull_request: {branches: [main], branches-ignore: [dev]}, forks: maybe}
      run: {target: mem}
    - name: c
      on: {repo: x, comment: {pattern: "(", authors: [MEMBR]}}
      run: {target: mem}
    - name: d
      on: {repo: x, comment: {pattern: "^/retest", authors: [MEMBR]}, forks: {authors: [OWNR]}}
      run: {target: mem}
    - name: e
      on: {repo: x, events: [comment]}
      run: {target: mem}
    """) == [
        "rules.yaml:7: rule 'a': unknown key 'branch' in 'on.pull_request' (did you mean 'branches'?)",
        "rules.yaml:7: rule 'a': unknown pull request action 'opend' (did you mean 'opened'?); known: "
        "opened, edited, closed, reopened, synchronize, assigned, unassigned, labeled, unlabeled, "
        "converted_to_draft, ready_for_review, locked, unlocked, milestoned, demilestoned, enqueued, "
        "dequeued, review_requested, review_request_removed, auto_merge_enabled, auto_merge_disabled, "
        "approved, unapproved",
        "rules.yaml:7: rule 'a': 'on.branches' filters pushes, and this rule takes no pushes (events "
        "[pull_request]); for pull requests use on.pull_request.branches",
        "rules.yaml:10: rule 'b': 'pull_request.branches' and 'pull_request.branches-ignore' cannot both "
        "be set (use '!' patterns in 'branches')",
        "rules.yaml:10: rule 'b': 'on.forks' must be skip (the default), run, or "
        "{authors: [OWNER, MEMBER, COLLABORATOR]}",
        "rules.yaml:13: rule 'c': on.comment.pattern is not a regular expression: missing ), unterminated "
        "subpattern at position 0",
        "rules.yaml:16: rule 'd': unknown author association 'OWNR' in on.forks.authors (did you mean "
        "'OWNER'?); known: OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, "
        "MANNEQUIN, NONE (or a user name)",
        "rules.yaml:16: rule 'd': unknown author association 'MEMBR' in on.comment.authors (did you mean "
        "'MEMBER'?); known: OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, "
        "MANNEQUIN, NONE (or a user name)",
        "rules.yaml:19: rule 'e': on.events lists comment: say which comments in on.comment "
        "(pattern: '^/retest\\b', authors: [...])",
    ]


def test_a_rule_with_pull_request_takes_only_pull_requests_unless_events_say_more(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent("""\
    - name: pr
      on: {repo: x, pull_request: null}
      run: {target: mem}
    - name: both
      on: {repo: x, events: [push, pull_request], branches: [main], pull_request: {branches: [main]}}
      run: {target: mem}
    - name: retest
      on: {repo: x, comment: '^/retest'}
      run: {target: mem}
    """), "  "), encoding="utf-8")
    rules = {r.name: r for r in load_config(path, environ={"S": "x"}).rules}
    assert rules["pr"].events == ("pull_request",)
    assert rules["pr"].pull.types == ("opened", "synchronize", "reopened") and rules["pr"].forks == "skip"
    assert rules["both"].events == ("push", "pull_request")
    assert rules["retest"].events == ("comment",)
    assert rules["retest"].comment.authors == ("OWNER", "MEMBER", "COLLABORATOR")
