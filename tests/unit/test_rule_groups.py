"""The policy group a rule's job belongs to: a template rendered from the event (`${rule}` its
name), and a plain group kept as written."""
from __future__ import annotations

import textwrap

import pytest

from bridge.config.load import load_config
from bridge.events import Event


def push() -> Event:
    return Event(provider="github", source="github", delivery_id="d-1", kind="push", repo="acme/api",
                 ref="refs/heads/main", ref_name="main", before="a" * 40, after="b" * 40, sha="b" * 40,
                 commits=(), commits_complete=False, pusher="octocat", default_branch="main",
                 clone_urls=(), head_message="")


@pytest.mark.parametrize("group, want", [
    ("deploys", "deploys"),                               # plain: as written
    ("${rule}/${ref_name}", "api/main"),                  # a template
])
def test_a_jobs_group(tmp_path, group, want):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(f"""\
    sources:
      github: {{provider: github, secrets: ["${{env:S}}"]}}
    targets:
      ci:
        kind: memory
        policy: {{group: "{group}", max_running_per_group: 1}}
    rules:
      - name: api
        on: {{repo: acme/api}}
        run: {{target: ci}}
    """))
    [verdict] = load_config(path, environ={"S": "x"}).ruleset.match(push())
    assert [j.group for j in verdict.jobs] == [want]
