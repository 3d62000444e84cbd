"""`bridge check` and `bridge explain` through the real command line (click's runner)."""
import json

import pytest
from click.testing import CliRunner
from conftest import BASE_RULES
from signing import load_payload, payload_files, payloads_dir

from bridge.cli import cli

EVENT_KEYS = {"provider", "source", "delivery_id", "kind", "repo", "ref", "ref_name", "before", "after",
              "sha", "created", "deleted", "forced", "commits", "commits_complete", "pusher",
              "default_branch", "clone_urls", "head_message"}

RULES = BASE_RULES + """\
  - name: api-src
    on: {repo: "**", branches: [main, master], paths: ["src/**"]}
    run: {target: mem}
"""


@pytest.fixture
def rules(write_rules):
    return write_rules(RULES)


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("rel", payload_files("github") + payload_files("gitlab"))
def test_explain_json_on_every_shared_payload(rules, tmp_path, rel):
    _, headers = load_payload(rel)
    hfile = tmp_path / "headers.json"
    hfile.write_text(json.dumps(headers))
    source = rel.split("/")[0]
    code, out = run("explain", "--rules", rules, "--source", source, "--headers", hfile,
                    "--format", "json", payloads_dir() / rel)
    assert code == 0, out
    data = json.loads(out)
    assert set(data) == {"rules_version", "source", "provider", "event", "ignored", "files", "rules"}
    if data["event"] is None:
        assert data["ignored"] and data["rules"] == []
        return
    assert set(data["event"]) == EVENT_KEYS
    assert [r["name"] for r in data["rules"]] == ["every-branch", "tags", "api-src"]
    for r in data["rules"]:
        assert set(r) == {"name", "matched", "reason", "needs_files", "jobs"}
        assert r["reason"]
        assert bool(r["jobs"]) == r["matched"]


def test_explain_text_names_the_failing_clause(rules):
    code, out = run("explain", "--rules", rules, "--source", "github", "--event", "push",
                    payloads_dir() / "github/push__goscm-tag-create.json")
    assert code == 0
    assert "MATCH  tags" in out
    assert "no     every-branch: tag 'v0.0.1': the rule filters branches only, so tag pushes do not run" in out


def test_explain_gitlab_capped_list_needs_files(rules):
    code, out = run("explain", "--rules", rules, "--source", "gitlab", "--event", "Push Hook",
                    "--format", "json", payloads_dir() / "gitlab/push_hook__docs.json")
    data = json.loads(out)
    assert data["event"]["commits_complete"] is False
    assert data["files"]["source"] == "unknown"
    api = [r for r in data["rules"] if r["name"] == "api-src"][0]
    assert api["needs_files"] is True and api["matched"] is True


def test_explain_errors(rules):
    code, out = run("explain", "--rules", rules, "--source", "nope", "--event", "push",
                    payloads_dir() / "github/push__goscm-branch.json")
    assert code == 1 and "unknown source 'nope'" in out
    code, out = run("explain", "--rules", rules, "--source", "github",
                    payloads_dir() / "github/push__goscm-branch.json")
    assert code == 1 and "X-GitHub-Event" in out


def test_check_ok_and_broken(write_rules):
    good = write_rules(RULES)
    code, out = run("check", good)
    assert code == 0 and "OK (2 sources, 1 targets, 3 rules" in out
    bad = write_rules(RULES.replace('paths: ["src/**"]', 'pahts: ["src/**"]'), name="bad.yaml")
    code, out = run("check", bad)
    assert code == 1
    assert "bad.yaml:19: rule 'api-src': unknown key 'pahts' in 'on' (did you mean 'paths'?)" in out
    assert "1 problem(s); nothing started" in out
