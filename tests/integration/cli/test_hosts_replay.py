"""`cibridge replay` and `deliveries show` on the rows of a Bitbucket delivery with three changes:
each row is one change, and replaying `<uuid>+2` re-matches that change (not the first one)."""
from __future__ import annotations

from click.testing import CliRunner
from helpers.hosts import signed
from helpers.rules import HOSTS_RULES, SECRET_ENV

from bridge.cli.main import cli

UUID = "a742f122-2084-52a7-b356-d2a958570b2c"


def test_replay_of_the_second_change(make_app, tmp_path):
    app, store = make_app(HOSTS_RULES)
    body, headers = signed("bitbucket", "bitbucket/repo_push__jenkins-multiple-changes.json")
    assert app.test_client().post("/hooks/bitbucket", data=body, headers=headers).status_code == 202
    result = CliRunner().invoke(cli, ["replay", "--rules", str(tmp_path / "rules.yaml"), "--state-dir",
                                      str(tmp_path), f"{UUID}+2"], env=SECRET_ENV)
    assert result.exit_code == 0, result.output
    assert "MATCH every-branch" in result.output and "queued 1 job(s)" in result.output
    jobs = store.get_delivery(f"{UUID}+2")["jobs"]
    assert [j["request"]["parameters"]["BRANCH"] for j in jobs] == ["manchu", "manchu"]
    shown = CliRunner().invoke(cli, ["deliveries", "--state-dir", str(tmp_path), "show", f"{UUID}+3"])
    assert shown.exit_code == 0 and "refs/tags/v0.1" in shown.output, shown.output
