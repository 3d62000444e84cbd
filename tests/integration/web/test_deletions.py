"""Deleted branches and tags have no commit: `sha` is null in the event, explain and stored
deliveries, `${sha}` renders empty, and `cibridge check` refuses `${sha}` in a rule that runs on
deletions unless the rule accepts an empty value. Real GitHub and GitLab deletion payloads."""
import json

import pytest
from helpers.cli import explain_shared, run
from helpers.rules import BASE_RULES, GITHUB_SECRET, GITLAB_TOKEN
from helpers.payloads import load_payload, payload_files, sign_github

from bridge.config.load import load_config
from bridge.events import ZERO_SHA, Event
from bridge.providers import get_provider


def _deletions() -> list[str]:
    """Every shared push payload whose ref was deleted (`"deleted": true` or after all zeros)."""
    out = []
    for rel in payload_files("github") + payload_files("gitlab"):
        data = json.loads(load_payload(rel)[0])
        if isinstance(data, dict) and (data.get("deleted") is True or data.get("after") == ZERO_SHA):
            out.append(rel)
    return out


DELETIONS = _deletions()

DELETE_RULES = BASE_RULES + """\
  - name: cleanup
    on: {repo: "**", events: [delete]}
    allow_empty_sha: true
    run: {target: mem, parameters: {SHA: "${sha}", SHORT: "${short_sha}", LAST: "${before}", REF: "${ref}"}}
"""


def normalize(rel):
    body, headers = load_payload(rel)
    provider = rel.split("/")[0]
    return get_provider(provider).normalize(headers, body, source=provider, delivery_id="d")


def test_the_shared_payloads_hold_github_and_gitlab_deletions():
    assert {rel.split("/")[0] for rel in DELETIONS} == {"github", "gitlab"}
    assert len(DELETIONS) >= 6


@pytest.mark.parametrize("rel", DELETIONS)
def test_a_deletion_has_no_commit_to_build(rel):
    e = normalize(rel)
    assert (e.kind, e.deleted, e.after) == ("delete", True, ZERO_SHA)
    assert e.sha is None
    assert e.to_dict()["sha"] is None
    fields = e.template_fields()
    assert fields["sha"] == "" and fields["short_sha"] == ""
    assert fields["before"] == e.before != ZERO_SHA         # the commit the ref pointed to
    assert Event.from_dict(json.loads(json.dumps(e.to_dict()))) == e


def test_a_deletion_stored_before_this_change_reads_back_without_a_commit():
    e = normalize("gitlab/push_hook__goscm-branch-delete.json")
    old = {**e.to_dict(), "sha": ZERO_SHA}
    assert Event.from_dict(old).sha is None


@pytest.mark.parametrize("rel", DELETIONS)
def test_explain_shows_null_sha_in_json_and_no_zeros_in_text(write_rules, tmp_path, rel):
    rules = write_rules(DELETE_RULES)
    code, out = explain_shared(rules, rel, tmp_path)
    assert code == 0, out
    data = json.loads(out)
    assert data["event"]["sha"] is None and data["event"]["after"] == ZERO_SHA
    [cleanup] = [r for r in data["rules"] if r["name"] == "cleanup"]
    assert cleanup["matched"]
    params = cleanup["jobs"][0]["request"]["parameters"]
    assert params["SHA"] == "" and params["SHORT"] == "" and params["LAST"] == data["event"]["before"]
    code, text = explain_shared(rules, rel, tmp_path, fmt="text")
    assert code == 0, text
    assert "no commit to build" in text and "(build 000000" not in text


# --- cibridge check -----------------------------------------------------------------------------

CHECKED = """\
sources:
  github: {provider: github, secrets: ["${env:GH_SECRET}"]}
targets:
  mem: {kind: memory}
  local: {kind: exec}
rules:
  - name: api-main
    on: {repo: acme/api}
    run: {target: mem, parameters: {SHA: "${sha}"}}
  - name: cleanup
    on:
      repo: acme/api
      events: [push, delete]
    run:
      target: mem
      parameters:
        SHA: "${sha}"
        LABEL: "build-${short_sha}"
        LAST: "${before}"
  - name: deploy
    on: {repo: acme/api, events: delete}
    run: {target: local, command: [./teardown], env: {COMMIT: "${sha}"}}
"""


def test_check_refuses_sha_in_a_rule_that_runs_on_deletions_with_line_rule_and_fix(write_rules):
    path = write_rules(CHECKED)
    code, out = run("check", path)
    assert code == 1
    lines = [line for line in out.splitlines() if "empty when a branch or tag is deleted" in line]
    assert [line.split(": ", 2)[:2] for line in lines] == [
        ["rules.yaml:17", "rule 'cleanup'"], ["rules.yaml:18", "rule 'cleanup'"],
        ["rules.yaml:22", "rule 'deploy'"]]
    assert "'${sha}'" in lines[0] and "'${short_sha}'" in lines[1]
    for line in lines:
        assert "allow_empty_sha: true" in line and "${before}" in line and "on.events" in line
    assert "api-main" not in out        # ${sha} without deletions is fine
    assert "3 problem(s)" in out


def test_check_accepts_sha_when_the_rule_allows_an_empty_value(write_rules):
    text = CHECKED.replace("  - name: cleanup\n", "  - name: cleanup\n    allow_empty_sha: true\n") \
                  .replace("  - name: deploy\n", "  - name: deploy\n    allow_empty_sha: true\n")
    code, out = run("check", write_rules(text))
    assert code == 0, out


def test_check_accepts_a_deletion_rule_built_on_before(write_rules):
    text = CHECKED.replace('"${sha}"', '"${before}"').replace("build-${short_sha}", "x")
    code, out = run("check", write_rules(text))
    assert code == 0, out


def test_allow_empty_sha_must_be_a_boolean(write_rules):
    text = CHECKED.replace("  - name: cleanup\n", "  - name: cleanup\n    allow_empty_sha: 'yes'\n")
    code, out = run("check", write_rules(text))
    assert code == 1 and "rules.yaml:11: rule 'cleanup': allow_empty_sha must be true or false" in out


# --- ingress: the delivery, its job and what is stored -------------------------------------------

@pytest.mark.parametrize("rel", DELETIONS)
def test_a_deletion_delivery_builds_with_an_empty_sha(make_app, rel):
    app, store = make_app(DELETE_RULES)
    body, headers = load_payload(rel)
    source = rel.split("/")[0]
    if source == "github":
        headers.update(sign_github(body, GITHUB_SECRET))
    else:
        headers["X-Gitlab-Token"] = GITLAB_TOKEN
    resp = app.test_client().post(f"/hooks/{source}", data=body, headers=headers)
    data = resp.get_json()
    assert resp.status_code == 202, data
    [job] = data["jobs"]
    assert job["request"]["parameters"]["SHA"] == "" and job["request"]["parameters"]["SHORT"] == ""
    assert job["request"]["parameters"]["LAST"] == json.loads(body)["before"]
    stored = store.get_delivery(data["delivery"])
    assert stored["event"]["sha"] is None and stored["event"]["after"] == ZERO_SHA


def test_rules_using_sha_without_deletions_still_load(secret_env):
    # BASE_RULES' push and tag rules use ${sha} and do not run on deletions: no problem.
    assert len(load_config("rules.yaml", text=BASE_RULES, environ=secret_env).rules) == 2
