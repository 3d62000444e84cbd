"""`cibridge reconcile` in-process against the GitHub API stand-in: a progress line per hook and
repository, `--dry-run` asks and stores nothing, a run stores the synthesized push that
`cibridge deliveries` then shows `via reconcile`, JSON for scripts, exit 1 on a host's refusal."""
from __future__ import annotations

import json

from click.testing import CliRunner

from bridge.cli.main import cli
from helpers.reconcile import API_TOKEN, LIMITED_TOKEN, REPO, github_host, rules_text


def invoke(tmp_path, *args):
    return CliRunner().invoke(cli, ["reconcile", "--rules", str(tmp_path / "rules.yaml"),
                                    "--state-dir", str(tmp_path / "var"), *args])


def test_dry_run_then_run_then_deliveries_show_the_recovered_push(tmp_path, secret_env, monkeypatch):
    monkeypatch.setenv("GH_API_TOKEN", API_TOKEN)
    with github_host() as api:
        hook = api.hooks.add_hook("http://127.0.0.1:9/hooks/github", "s", repo=REPO)
        (tmp_path / "rules.yaml").write_text(rules_text(api.url, hook, watch=f"watch: [{REPO}]"))
        assert invoke(tmp_path).exit_code == 0                         # the baseline: nothing yet
        api.hooks.move(REPO, tag="v9", sha="9" * 40)
        dry = invoke(tmp_path, "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert f"github {REPO} hook {hook}: 0 attempts since 24.0h ago" in dry.output
        assert f"github {REPO}: 1 watched refs, 1 ahead of the deliveries" in dry.output
        assert "new_tag          would_ingest" in dry.output
        assert dry.output.rstrip().endswith("1 found, nothing done (--dry-run); 3 API calls")
        run = invoke(tmp_path, "--format", "json", "--source", "github")
        assert run.exit_code == 0, run.output
        report = json.loads(run.stdout)
        assert [(f["ref"], f["action"]) for f in report["found"]] == [("refs/tags/v9", "ingested")]
        listed = CliRunner().invoke(cli, ["deliveries", "--state-dir", str(tmp_path / "var"),
                                          "--rules", str(tmp_path / "rules.yaml")])
        assert "tag:queued" in listed.output and "  (via reconcile)" in listed.output
        # The stored body is the push as the host would have sent it: explain reads it again.
        rows = json.loads(CliRunner().invoke(cli, ["deliveries", "--format", "json", "--state-dir",
                                                   str(tmp_path / "var")]).output)
        explained = CliRunner().invoke(cli, ["explain", "--delivery", rows[0]["delivery"], "--rules",
                                             str(tmp_path / "rules.yaml"), "--state-dir",
                                             str(tmp_path / "var"), "--format", "json"])
        assert explained.exit_code == 0, explained.output
        assert json.loads(explained.output)["event"]["pusher"] == "bridge-reconcile"
        assert invoke(tmp_path, "--dry-run").output.rstrip().endswith("0 found, nothing done (--dry-run); 3 API calls")


def test_a_refusing_host_is_a_warning_and_exit_1(tmp_path, secret_env, monkeypatch):
    monkeypatch.setenv("GH_API_TOKEN", LIMITED_TOKEN)
    with github_host(limited=[LIMITED_TOKEN]) as api:
        hook = api.hooks.add_hook("http://127.0.0.1:9/hooks/github", "s", repo=REPO)
        (tmp_path / "rules.yaml").write_text(rules_text(api.url, hook))
        result = invoke(tmp_path)
    assert result.exit_code == 1
    assert "warning: source 'github' f110/test hook" in result.output
    assert "403 Resource not accessible by personal access token" in result.output


def test_nothing_to_reconcile_says_what_is_missing(tmp_path, write_rules):
    write_rules()
    result = CliRunner().invoke(cli, ["reconcile", "--rules", str(tmp_path / "rules.yaml"),
                                      "--state-dir", str(tmp_path / "var")])
    assert result.exit_code == 1 and "nothing to reconcile: no source has a reconcile:" in result.output
