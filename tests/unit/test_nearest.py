"""Why did my push not build? GitHub and GitLab repo paths match regardless of case, and every
answer (the 200 reply, `deliveries show`, `explain --delivery`) names the rules nearest the push's
repo with why each stopped, and counts the rest. Real payloads, real SQLite, the real CLI."""
import json
import uuid

from click.testing import CliRunner
from helpers.rules import GITHUB_SECRET, GITLAB_TOKEN
from helpers.payloads import load_payload, sign_github

from bridge.cli.main import cli
from bridge.nearest import LIMIT, NearIndex

HEAD = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
  gitlab:
    provider: gitlab
    secrets: ["${env:GL_TOKEN}"]
targets:
  mem: {kind: memory}
rules:
"""


def rule(name, repo, extra=""):
    return f"  - name: {name}\n    on: {{repo: {json.dumps(repo)}{extra}}}\n    run: {{target: mem}}\n"


UNRELATED = "".join(rule(f"unrelated-{i}", f"other{i}/repo{i}") for i in range(30))


def github_push(client, repo, branch="master", delivery=None):
    """A real GitHub push (goscm-branch), its repository renamed to `repo`, signed."""
    body, headers = load_payload("github/push__goscm-branch.json")
    data = json.loads(body)
    data["repository"]["full_name"] = repo
    data["ref"] = f"refs/heads/{branch}"
    body = json.dumps(data).encode()
    headers.update(sign_github(body, GITHUB_SECRET))
    headers["X-GitHub-Delivery"] = delivery or str(uuid.uuid4())
    return client.post("/hooks/github", data=body, headers=headers)


def gitlab_push(client, path):
    body, headers = load_payload("gitlab/push_hook__goscm-subgroup.json")
    data = json.loads(body)
    data["project"]["path_with_namespace"] = path
    headers["X-Gitlab-Token"] = GITLAB_TOKEN
    headers["Idempotency-Key"] = str(uuid.uuid4())
    return client.post("/hooks/gitlab", data=json.dumps(data).encode(), headers=headers)


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


# --- repo paths ignore case on GitHub and GitLab ------------------------------------------------

def test_a_push_to_Acme_API_builds_the_rule_for_acme_api(make_app):
    app, _ = make_app(HEAD + rule("api", "acme/api") + UNRELATED)
    resp = github_push(app.test_client(), "Acme/API")
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["matched"] == ["api"]


def test_repo_globs_ignore_case_too_but_branches_do_not(make_app):
    app, _ = make_app(HEAD + rule("org", "ACME/*", ", branches: [main]"))
    client = app.test_client()
    assert github_push(client, "acme/api", "main").status_code == 202
    resp = github_push(client, "acme/web", "Main")
    assert resp.status_code == 200
    [verdict] = resp.get_json()["rules"]
    assert verdict["reason"] == "branch 'Main' is not in branches [main]"


def test_gitlab_subgroup_paths_ignore_case(make_app):
    app, _ = make_app(HEAD + rule("proj", "group1/group2/group3/grp2repo"))
    resp = gitlab_push(app.test_client(), "Group1/Group2/group3/Grp2Repo")
    assert resp.status_code == 202, resp.get_json()


# --- the nearest rules, in every answer ---------------------------------------------------------

NEAR_RULES = (HEAD + rule("api-on-gitlab", "acme/api", ", source: gitlab")
              + rule("corp-api", "acme-corp/api") + rule("team-api", "acme/team/api")
              + UNRELATED)


def test_the_no_match_reply_names_the_near_rules_and_counts_the_rest(make_app):
    app, _ = make_app(NEAR_RULES)
    resp = github_push(app.test_client(), "Acme/API")
    data = resp.get_json()
    assert resp.status_code == 200 and data["matched"] == []
    reasons = {r["rule"]: r["reason"] for r in data["rules"]}
    assert reasons == {
        "api-on-gitlab": "source 'github' is not in [gitlab]",
        "corp-api": "repo 'Acme/API' is not in [acme-corp/api]",
        "team-api": "repo 'Acme/API' is not in [acme/team/api]",
    }
    assert data["other_rules"] == 30
    assert data["reason"] == "no rule matched; 30 other rules name other repositories"


def test_no_rule_for_the_repo_still_names_the_nearest(make_app):
    app, _ = make_app(HEAD + rule("corp-api", "acme-corp/api") + rule("api", "acme/api/extra")
                      + UNRELATED)
    data = github_push(app.test_client(), "acme/api").get_json()
    assert [r["rule"] for r in data["rules"]] == ["api", "corp-api"]     # nearest first
    assert all(not r["matched"] and r["reason"].startswith("repo 'acme/api' is not in") for r in data["rules"])
    assert data["reason"].startswith("no rule names this repository; nearest: api, corp-api")
    assert data["reason"].endswith("30 other rules name other repositories")


def test_deliveries_show_lists_the_near_rules(make_app, tmp_path):
    app, _ = make_app(NEAR_RULES)
    delivery = github_push(app.test_client(), "Acme/API").get_json()["delivery"]
    code, out = run("deliveries", "--rules", tmp_path / "rules.yaml", "--state-dir", tmp_path,
                    "show", delivery)
    assert code == 0, out
    assert "rule     no    corp-api: repo 'Acme/API' is not in [acme-corp/api]" in out
    assert "rule     no    team-api: repo 'Acme/API' is not in [acme/team/api]" in out
    assert "rule     no    api-on-gitlab: source 'github' is not in [gitlab]" in out
    assert "30 other rules name other repositories" in out


# --- cibridge explain --delivery --------------------------------------------------------------------

def test_explain_delivery_reruns_a_stored_delivery_without_webhook_secrets(make_app, tmp_path, monkeypatch):
    app, _ = make_app(NEAR_RULES)
    delivery = github_push(app.test_client(), "Acme/API").get_json()["delivery"]
    rules = tmp_path / "rules.yaml"
    # A fix after the fact: a rule for this repo, then the stored delivery explained again.
    rules.write_text(rules.read_text() + rule("api-fixed", "acme/api"))
    for name in ("GH_SECRET", "GL_TOKEN", "GH_SECRET_OLD"):
        monkeypatch.delenv(name, raising=False)
    code, out = run("explain", "--rules", rules, "--state-dir", tmp_path, "--delivery", delivery,
                    "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["delivery"]["delivery"] == delivery and data["delivery"]["outcome"] == "no_match"
    assert data["source"] == "github" and data["event"]["repo"] == "Acme/API"
    verdicts = {r["name"]: (r["matched"], r["reason"]) for r in data["rules"]}
    assert verdicts["api-fixed"] == (True, "matched")
    assert verdicts["corp-api"] == (False, "repo 'Acme/API' is not in [acme-corp/api]")
    code, text = run("explain", "--rules", rules, "--state-dir", tmp_path, "--delivery", delivery)
    assert code == 0, text
    assert text.startswith(f"delivery: {delivery} (source github): no_match")
    assert "MATCH  api-fixed: matched" in text


def test_explain_delivery_takes_a_unique_prefix_and_names_the_candidates_of_an_ambiguous_one(make_app, tmp_path):
    app, _ = make_app(NEAR_RULES)
    client = app.test_client()
    for delivery, repo in (("abcd-1111", "Acme/API"), ("abcd-2222", "acme/web")):
        assert github_push(client, repo, delivery=delivery).get_json()["delivery"] == delivery
    rules = tmp_path / "rules.yaml"
    code, out = run("explain", "--rules", rules, "--state-dir", tmp_path, "--delivery", "abcd-2")
    assert code == 0, out
    assert out.startswith("delivery: abcd-2222 (source github): ")
    code, out = run("explain", "--rules", rules, "--state-dir", tmp_path, "--delivery", "abcd")
    assert (code, out) == (1, "error: 'abcd' is ambiguous: it starts 2 delivery ids: abcd-1111, "
                              "abcd-2222; give more of the id\n")
    code, out = run("explain", "--rules", rules, "--state-dir", tmp_path, "--delivery", "abc%")
    assert (code, out) == (1, f"error: no delivery 'abc%' in the store ({tmp_path})\n")


def test_explain_delivery_errors_are_one_line(make_app, tmp_path):
    make_app(NEAR_RULES)
    rules = tmp_path / "rules.yaml"
    code, out = run("explain", "--rules", rules, "--state-dir", tmp_path, "--delivery", "nope")
    assert code == 1 and "no delivery 'nope'" in out
    code, out = run("explain", "--rules", rules, "--state-dir", tmp_path / "empty", "--delivery", "x")
    assert code == 1 and "no database in the state directory" in out
    assert not (tmp_path / "empty" / "bridge.db").exists()
    code, out = run("explain", "--rules", rules, "--delivery", "x", "--source", "github")
    assert code == 2 and "--delivery explains a stored delivery" in out
    code, out = run("explain", "--rules", rules)
    assert code == 2 and "give a PAYLOAD file and --source, or --delivery ID" in out


# --- the index ------------------------------------------------------------------------------------

def test_near_index_ranks_case_then_one_segment_more_or_fewer_then_one_different():
    index = NearIndex(enumerate([("acme/api",), ("acme/apx",), ("acme/web",), ("acme/team/api",),
                                 ("acme",), ("other/thing",), ("acme-corp/api",), ("group/acme/api",)]))
    assert index.lookup("acme/api") == [0, 3, 4, 7, 1, 6, 2]
    assert index.lookup("acme/api", exclude={0}) == [3, 4, 7, 1, 6, 2]
    assert index.lookup("x/y/z") == []


def test_near_answers_are_capped_and_the_rest_counted(make_app):
    crowd = "".join(rule(f"acme-{i}", f"acme/repo{i}") for i in range(LIMIT + 15))
    app, _ = make_app(HEAD + crowd)
    data = github_push(app.test_client(), "acme/repo").get_json()
    assert len(data["rules"]) == LIMIT and data["other_rules"] == 15
    assert data["rules"][0]["rule"].startswith("acme-")


def test_explain_delivery_on_a_gitlab_push_and_an_ignored_ping(make_app, tmp_path):
    app, _ = make_app(HEAD + rule("proj", "group1/group2/group3/grp2repo"))
    client = app.test_client()
    pushed = gitlab_push(client, "Group1/Group2/group3/Grp2Repo").get_json()["delivery"]
    body, headers = load_payload("github/ping__octokit-repo-hook.json")
    headers.update(sign_github(body, GITHUB_SECRET))
    pinged = client.post("/hooks/github", data=body, headers=headers).get_json()["delivery"]
    rules = tmp_path / "rules.yaml"
    code, out = run("explain", "--rules", rules, "--state-dir", tmp_path, "--delivery", pushed,
                    "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["source"] == "gitlab" and data["delivery"]["outcome"] == "matched"
    assert [(r["name"], r["matched"]) for r in data["rules"]] == [("proj", True)]
    code, out = run("explain", "--rules", rules, "--state-dir", tmp_path, "--delivery", pinged)
    assert code == 0, out
    assert out.splitlines()[1] == "ignored: ping"


def test_explain_delivery_reads_a_database_url_given_as_a_secret_reference(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGE_TEST_DB", f"sqlite:///{tmp_path / 'bridge.db'}")
    app, _ = make_app(NEAR_RULES + "settings:\n  database_url: ${env:BRIDGE_TEST_DB}\n")
    delivery = github_push(app.test_client(), "acme/api").get_json()["delivery"]
    monkeypatch.delenv("GH_SECRET")
    code, out = run("explain", "--rules", tmp_path / "rules.yaml", "--state-dir", tmp_path / "elsewhere",
                    "--delivery", delivery, "--format", "json")
    assert code == 0, out
    assert json.loads(out)["delivery"]["delivery"] == delivery
