"""exec commands are literal: `cibridge check` refuses every template in an exec argv (each bypass
of the old shell deny-list), a ref git would refuse is a 400 at ingress, and an odd but valid
branch name builds and reaches the command only through its environment (real app, real SQLite,
real dispatcher, real subprocess)."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from helpers.rules import GITHUB_SECRET, GITLAB_TOKEN
from helpers.payloads import load_payload, sign_github

from bridge.cli.main import cli
from bridge.dispatch.loop import Dispatcher
from bridge.policies import RetryPolicy

HEAD = """\
sources:
  github: {provider: github, secrets: ["${env:GH_SECRET}"]}
  gitlab: {provider: gitlab, secrets: ["${env:GL_TOKEN}"]}
targets:
  local: {kind: exec}
rules:
"""

BYPASSES = [
    ["/usr/bin/env", "sh", "-c", "echo ${branch}"],
    ["bash5.2", "-c", "echo ${branch}"],
    ["python3.11", "-c", "print('${branch}')"],
    ["xargs", "sh", "-c", "echo ${branch}"],
    ["ssh", "host", "deploy.sh ${branch}"],
    ["timeout", "60", "sh", "-c", "deploy ${branch}"],
    ["nice", "-n", "5", "sh", "-c", "deploy ${branch}"],
    ["sudo", "-u", "deploy", "sh", "-c", "deploy ${branch}"],
    ["flock", "/tmp/lock", "sh", "-c", "deploy ${branch}"],
    ["env", "A=1", "sh", "-c", "deploy ${branch}"],
    ["/bin/sh", "-c", "deploy ${branch}"],
    ["make", "BRANCH=${branch}"],                        # no shell at all: still refused
    ["git", "fetch", "origin", "${branch}"],             # would read '--upload-pack=...' as an option
]


def check(write_rules, text):
    result = CliRunner().invoke(cli, ["check", str(write_rules(text))], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", BYPASSES, ids=lambda c: " ".join(c)[:40])
def test_check_refuses_any_template_in_an_exec_argv(write_rules, command):
    text = HEAD + ("  - name: x\n    on: {repo: \"**\"}\n    run:\n      target: local\n"
                   f"      command: {json.dumps(command)}\n")
    code, out = check(write_rules, text)
    assert code == 1
    assert out.splitlines()[0] == (
        "rules.yaml:11: rule 'x': command: templates are not allowed in an exec command's argv "
        "('${branch}'); pass it as an environment variable instead: env: {BRANCH: \"${branch}\"} "
        "and use \"$BRANCH\" in a script")


def test_check_names_each_template_with_its_line_and_refuses_cwd_templates(write_rules):
    text = HEAD + """\
  - name: y
    on: {repo: "**"}
    run:
      target: local
      command:
        - ssh
        - host
        - "deploy.sh ${repo} ${short_sha}"
      cwd: /srv/${repo}
"""
    code, out = check(write_rules, text)
    assert code == 1
    assert out.splitlines()[:3] == [
        "rules.yaml:14: rule 'y': command: templates are not allowed in an exec command's argv "
        "('${repo}'); pass it as an environment variable instead: env: {REPO: \"${repo}\"} and use "
        "\"$REPO\" in a script",
        "rules.yaml:14: rule 'y': command: templates are not allowed in an exec command's argv "
        "('${short_sha}'); pass it as an environment variable instead: env: {SHORT_SHA: "
        "\"${short_sha}\"} and use \"$SHORT_SHA\" in a script",
        "rules.yaml:15: rule 'y': cwd: templates are not allowed in an exec command's working "
        "directory ('${repo}'); pass it as an environment variable instead: env: {REPO: \"${repo}\"} "
        "and cd \"$REPO\" in a script"]


def test_the_env_form_and_literal_dollars_pass_check(write_rules):
    text = HEAD + """\
  - name: ok
    on: {repo: "**"}
    run:
      target: local
      command: ["sh", "-c", 'deploy.sh "$BRANCH" "$BRIDGE_REPO" $${HOME}']
      env: {BRANCH: "${branch}", WHERE: "${repo}@${short_sha}"}
"""
    code, out = check(write_rules, text)
    assert code == 0, out
    # Templates in env: are still checked like any other.
    code, out = check(write_rules, text.replace("${repo}@", "${rpeo}@"))
    assert code == 1 and "template '${rpeo}' names an unknown field (did you mean '${repo}'?)" in out


# -- ingress: ref names git would refuse -----------------------------------------------------

HOSTILE_REFS = [
    "refs/heads/--upload-pack=touch /tmp/pwned",
    "refs/heads/--upload-pack=touch${IFS}pwned",
    "refs/heads/-x",
    "refs/tags/-v1",
    "refs/heads/a..b",
    "refs/heads/a@{1}",
    "refs/heads/main.lock",
    "refs/heads/.hidden",
    "refs/heads/x/",
    "refs/heads//x",
    "refs/heads/x.",
    "refs/heads/a\nb",
    "refs/heads/a\x1bb",
    "refs/heads/a b",
    "refs/heads/a~1",
    "refs/heads/a^{}",
    "refs/heads/a:b",
    "refs/heads/a?",
    "refs/heads/a*",
    "refs/heads/a[b",
    "refs/heads/a\\b",
    "refs/heads/HEAD",
    "@",
]

EXEC_RULES = HEAD + """\
  - name: build
    on: {repo: "**", branches: ["**"]}
    run:
      target: local
      command: ["sh", "-c", 'printf "%s" "$BRANCH" > from-env; printf "%s" "$BRIDGE_BRANCH" > from-bridge']
      env: {BRANCH: "${branch}"}
  - name: tag
    on: {repo: "**", tags: ["**"]}
    run: {target: local, command: ["true"]}
"""


def github_push(ref: str, delivery: str):
    body, headers = load_payload("github/push__goscm-branch.json")
    payload = json.loads(body)
    payload["ref"] = ref
    body = json.dumps(payload).encode()
    headers.update(sign_github(body, GITHUB_SECRET))
    headers["X-GitHub-Delivery"] = delivery
    return body, headers


def gitlab_push(ref: str, delivery: str):
    body, headers = load_payload("gitlab/push_hook__goscm-branch.json")
    payload = json.loads(body)
    payload["ref"] = ref
    body = json.dumps(payload).encode()
    headers.update({"X-Gitlab-Token": GITLAB_TOKEN, "Idempotency-Key": delivery})
    return body, headers


@pytest.mark.parametrize("provider", ["github", "gitlab"])
@pytest.mark.parametrize("ref", HOSTILE_REFS, ids=repr)
def test_a_signed_push_with_a_ref_git_refuses_is_400_and_stores_nothing(make_app, provider, ref):
    app, store = make_app(EXEC_RULES)
    body, headers = (github_push if provider == "github" else gitlab_push)(ref, "hostile-1")
    resp = app.test_client().post(f"/hooks/{provider}", data=body, headers=headers)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error.startswith("push payload field 'ref' is not a ref name git accepts: ")
    assert store.get_delivery("hostile-1") is None
    assert store.queue_stats(0.0)["jobs"].get("queued", 0) == 0


def test_the_refusal_is_after_verification(make_app):
    app, _ = make_app(EXEC_RULES)
    body, headers = github_push("refs/heads/--upload-pack=x", "unsigned-1")
    headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    assert app.test_client().post("/hooks/github", data=body, headers=headers).status_code == 401


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_an_odd_but_valid_branch_builds_and_reaches_the_command_only_through_env(
        make_app, tmp_path, provider, monkeypatch):
    branch = "$(id>pwned)`touch${IFS}pwned2`;x|y&z\"'"
    app, store = make_app(EXEC_RULES)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)          # the command's cwd: where `id>pwned` would write
    body, headers = (github_push if provider == "github" else gitlab_push)(
        f"refs/heads/{branch}", "odd-1")
    resp = app.test_client().post(f"/hooks/{provider}", data=body, headers=headers)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    [job] = resp.get_json()["jobs"]
    # The stored request is the rule's literal argv; the name is only in the environment.
    assert job["request"]["command"] == [
        "sh", "-c", 'printf "%s" "$BRANCH" > from-env; printf "%s" "$BRIDGE_BRANCH" > from-bridge']
    assert job["request"]["env"] == {"BRANCH": branch}

    config = app.extensions["bridge"].config
    targets = config.build_targets()
    dispatcher = Dispatcher(store, targets, {"local": RetryPolicy()}, owner="t")
    try:
        assert dispatcher.run_once() == 1
    finally:
        for t in targets.values():
            t.close()
    assert store.get_delivery("odd-1")["jobs"][0]["state"] == "succeeded"
    assert (work / "from-env").read_text() == branch
    assert (work / "from-bridge").read_text() == branch
    assert sorted(os.listdir(work)) == ["from-bridge", "from-env"]     # no pwned, no pwned2


def test_a_template_in_an_exec_targets_own_cwd_is_refused_but_a_secret_reference_is_not(
        write_rules, monkeypatch):
    monkeypatch.setenv("BUILD_ROOT", "/srv/builds")
    text = HEAD.replace("  local: {kind: exec}\n", "  local: {kind: exec, cwd: \"/srv/${repo}\"}\n"
                        "  other: {kind: exec, cwd: \"${env:BUILD_ROOT}\"}\n") + \
        "  - name: ok\n    on: {repo: \"**\"}\n    run: {target: other, command: [\"true\"]}\n"
    code, out = check(write_rules, text)
    assert code == 1
    assert out.splitlines()[:-1] == [
        "rules.yaml:5: target 'local': cwd: templates are not allowed in an exec command's working "
        "directory ('${repo}'); pass it as an environment variable instead: env: {REPO: \"${repo}\"} "
        "and cd \"$REPO\" in a script (in a rule's run:, where templates are filled in)"]
