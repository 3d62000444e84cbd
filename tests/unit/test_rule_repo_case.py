"""Repository names on GitHub and GitLab (and Gitea, Forgejo, Bitbucket) are case-insensitive: a
rule's `repo:` matches however the host spells the name. The provider says so on the event
(`repo_case_insensitive`); an event that does not say so is compared exactly."""
import textwrap

from bridge.events import Event
from helpers.rules import GITHUB_TO_MEMORY_FLOW, load_ruleset


def ruleset(tmp_path):
    return load_ruleset(tmp_path, GITHUB_TO_MEMORY_FLOW + textwrap.dedent("""\
    rules:
      - name: api
        on: {repo: acme/api}
        run: {target: mem}
      - name: glob
        on: {repo: "acme/a*"}
        run: {target: mem}
    """))


def event(provider, repo):
    return Event(provider=provider, source="github", delivery_id="d", kind="push", repo=repo,
                 ref="refs/heads/main", ref_name="main", before="a" * 40, after="b" * 40, sha="b" * 40,
                 repo_case_insensitive=provider in ("github", "gitlab"))


def test_github_and_gitlab_repo_names_match_in_any_case(tmp_path):
    rs = ruleset(tmp_path)
    for provider in ("github", "gitlab"):
        assert [v.rule for v in rs.match(event(provider, "Acme/API")) if v.matched] == ["api", "glob"]
        assert [v.rule for v in rs.match(event(provider, "acme/api")) if v.matched] == ["api", "glob"]


def test_another_provider_compares_exactly(tmp_path):
    rs = ruleset(tmp_path)
    assert [v.rule for v in rs.match(event("gitea", "acme/api")) if v.matched] == ["api", "glob"]
    assert not any(v.matched for v in rs.match(event("gitea", "Acme/API")))
