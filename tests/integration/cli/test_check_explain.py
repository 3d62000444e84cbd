"""`cibridge check` and `cibridge explain` through the real command line (click's runner, and a real
subprocess for the shipped rules.yaml on a fresh checkout)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import explain_shared, run
from helpers.rules import BASE_RULES
from helpers.payloads import payload_files, payloads_dir


EVENT_KEYS = {"provider", "source", "delivery_id", "kind", "repo", "ref", "ref_name", "before", "after",
              "sha", "created", "deleted", "forced", "commits", "commits_complete", "pusher",
              "default_branch", "clone_urls", "head_message", "repo_case_insensitive"}
PULL_KEYS = {"number", "action", "host_action", "base_ref", "head_ref", "head_sha", "head_repo", "fork",
             "merged", "draft", "author", "author_association", "comment", "comment_id", "updated_at"}

RULES = BASE_RULES + """\
  - name: api-src
    on: {repo: "**", branches: [main, master], paths: ["src/**"]}
    run: {target: mem}
"""


@pytest.fixture
def rules(write_rules):
    return write_rules(RULES)


@pytest.mark.parametrize("rel", payload_files("github") + payload_files("gitlab"))
def test_explain_json_on_every_shared_payload(rules, tmp_path, rel):
    code, out = explain_shared(rules, rel, tmp_path)
    assert code == 0, out
    data = json.loads(out)
    assert set(data) == {"rules_version", "source", "provider", "event", "events", "ignored", "files",
                         "rules", "matches"}
    if data["event"] is None:
        assert data["ignored"] and data["rules"] == [] and data["events"] == data["matches"] == []
        return
    assert data["events"] == [data["event"]]
    assert data["matches"] == [{"files": data["files"], "rules": data["rules"]}]
    pull = data["event"]["kind"] == "pull_request"
    assert set(data["event"]) == (EVENT_KEYS | PULL_KEYS if pull else EVENT_KEYS)
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


# --- the shipped rules.yaml on a fresh checkout (no var/dev-secret: only `make run` writes it) ---

REPO = Path(__file__).resolve().parents[3]


def bridge(*args, cwd):
    """The real command in a subprocess, without any BRIDGE_*/credential environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BRIDGE_") and k not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")}
    proc = subprocess.run([sys.executable, "-m", "bridge", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def fresh_checkout(tmp_path):
    shutil.copy(REPO / "rules.yaml", tmp_path / "rules.yaml")      # unmodified
    assert not (tmp_path / "var").exists()
    return tmp_path


def test_shipped_rules_check_without_secrets_on_a_fresh_checkout(fresh_checkout):
    code, out, err = bridge("check", "--no-secrets", cwd=fresh_checkout)
    assert code == 0, err
    assert out.startswith("rules.yaml: OK (2 sources, 1 targets, 2 rules; version ")
    assert "secrets not read (--no-secrets): references checked for syntax only" in out
    code, out, err = bridge("check", cwd=fresh_checkout)
    assert code == 1
    line = next(n for n, text in enumerate((REPO / "rules.yaml").read_text().splitlines(), 1)
                if "${file:var/dev-secret}" in text and not text.lstrip().startswith("#"))
    assert f"rules.yaml:{line}: source 'github': secret ${{file:var/dev-secret}}: cannot read" in err
    assert "cibridge check --no-secrets" in err
    assert not (fresh_checkout / "var").exists()


def test_shipped_rules_explain_on_a_fresh_checkout(fresh_checkout):
    code, out, err = bridge("explain", "--source", "github", "--event", "push", "--format", "json",
                            payloads_dir() / "github/push__goscm-branch.json", cwd=fresh_checkout)
    assert code == 0, err
    data = json.loads(out)
    assert [(r["name"], r["matched"]) for r in data["rules"]] == [("log-every-push", True),
                                                                  ("log-tags", False)]
    code, out, err = bridge("explain", "--source", "gitlab", "--event", "System Hook",
                            payloads_dir() / "gitlab/system_hook__docs-tag-push.json", cwd=fresh_checkout)
    assert code == 0, err
    assert "MATCH  log-tags" in out


def test_no_secrets_still_checks_reference_syntax(write_rules, monkeypatch):
    monkeypatch.delenv("GL_TOKEN")
    text = BASE_RULES.replace('["${env:GL_TOKEN}"]', '["${env:GL_TOKEN}", "plain", "${credential:a/b}"]')
    code, out = run("check", "--no-secrets", write_rules(text))
    assert code == 1
    assert out.splitlines()[:2] == [
        "rules.yaml:7: source 'gitlab': secrets must be references like ${env:NAME}, ${file:PATH} "
        "or ${credential:NAME}, not literal values",
        "rules.yaml:7: source 'gitlab': secret ${credential:a/b}: a credential name cannot contain '/' or NUL",
    ]
    code, out = run("check", "--no-secrets", write_rules(BASE_RULES))     # GL_TOKEN unset: fine
    assert code == 0, out


def test_no_secrets_does_not_judge_target_options_it_did_not_read(write_rules):
    text = BASE_RULES.replace("targets:\n", """targets:
  ci:
    kind: jenkins
    url: ${env:JENKINS_URL}
    user: bridge
    token: ${credential:jenkins-token}
""")
    code, out = run("check", "--no-secrets", write_rules(text))
    assert code == 0, out
    code, out = run("check", "--no-secrets", write_rules(text.replace("url: ${env:JENKINS_URL}",
                                                                      "url: jenkins.example.com")))
    assert code == 1 and "url must be an http:// or https:// URL, not 'jenkins.example.com'" in out
    code, out = run("check", "--no-secrets", "--online", write_rules(text))
    assert code == 2 and "--online needs the targets' secrets" in out


# --- --headers FILE: a JSON object of headers, or `Name: value` lines ---------------------------

GITHUB_COPIED = """\
Request URL: https://bridge.example.com/hooks/github
Request method: POST
Accept: */*
content-type: application/json
User-Agent: GitHub-Hookshot/044aadd
X-GitHub-Delivery: 2f688ce0-7032-53ff-880e-d561703cc98a
X-GitHub-Event: push
X-GitHub-Hook-ID: 381213967
"""


def test_headers_as_name_value_lines_or_a_json_object(rules, tmp_path):
    payload = payloads_dir() / "github/push__goscm-branch.json"
    text = tmp_path / "headers.txt"
    text.write_text(GITHUB_COPIED)
    code, out = run("explain", "--rules", rules, "--source", "github", "--headers", text,
                    "--format", "json", payload)
    assert code == 0, out
    from_text = json.loads(out)
    assert from_text["event"]["delivery_id"] == "2f688ce0-7032-53ff-880e-d561703cc98a"
    assert from_text["rules"][0]["matched"] is True
    obj = tmp_path / "headers.json"
    obj.write_text(json.dumps({"X-GitHub-Event": "push",
                               "X-GitHub-Delivery": "2f688ce0-7032-53ff-880e-d561703cc98a"}))
    code, out = run("explain", "--rules", rules, "--source", "github", "--headers", obj,
                    "--format", "json", payload)
    assert code == 0 and json.loads(out) == from_text


def python_json_error(text: str) -> str:
    """What this Python's json module says about `text`."""
    try:
        json.loads(text)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"{text!r} is valid JSON")


@pytest.mark.parametrize("content, message", [
    (None, "the headers file maps names to sets of headers (as shared/payloads/headers.json does): "
           'give one set, {"X-GitHub-Event": "push", ...}'),
    ('[["X-GitHub-Event", "push"]]', 'the headers file holds a JSON list: give a JSON object of '
                                     'headers, {"X-GitHub-Event": "push", ...}, or \'Name: value\' lines'),
    # Python's own words for the fault (3.13 says "Illegal trailing comma ..."), not one version's.
    ('{"X-GitHub-Event": "push",}', "the headers file is not valid JSON: "
                                    + python_json_error('{"X-GitHub-Event": "push",}')),
    ('{"X-GitHub-Event": ["push"]}', "header 'X-GitHub-Event': the value must be a string, not [\"push\"]"),
    ("X-GitHub-Event: push\nX-GitHub-Delivery 5a89\n",
     "line 2: expected 'Name: value' (a header name, a colon, its value), not 'X-GitHub-Delivery 5a89'; "
     "or give a JSON object of headers"),
    (b"X-GitHub-Event: \xff\n", "the headers file is not UTF-8 text"),
    ("[" * 200_000, "the headers file is not valid JSON: nested too deeply"),
    ('{"X-GitHub-Event": "push", "X-GitHub-Delivery": "\\ud800"}',
     "header 'X-GitHub-Delivery': the value holds a line break, a NUL or a lone surrogate"),
    ('{"X-GitHub-Event": "push\\r\\nX-Evil: 1"}',
     "header 'X-GitHub-Event': the value holds a line break, a NUL or a lone surrogate"),
])
def test_bad_headers_files_exit_1_with_a_message(rules, tmp_path, content, message):
    path = payloads_dir() / "headers.json"
    if content is not None:
        path = tmp_path / "headers"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out = run("explain", "--rules", rules, "--source", "github", "--headers", path,
                    payloads_dir() / "github/push__goscm-branch.json")
    assert (code, out) == (1, f"error: --headers {path}: {message}\n")
