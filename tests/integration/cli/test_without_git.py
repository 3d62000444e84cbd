"""The command line on a host without `git` (a rules repository's CI image): `cibridge --help`,
`check --no-secrets` and the commands that use no mirror work; one that needs a mirror says in
one line that git is missing and leaves the decision to on_unknown_files. Real subprocesses with
a PATH that holds no git."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers.rules import SECRET_ENV
from helpers.payloads import load_payload

from bridge.dispatch.mirror_git import GIT_MISSING

RULES = textwrap.dedent("""\
    sources:
      gitlab:
        provider: gitlab
        secrets: ["${env:GL_TOKEN}"]
        clone_url: https://gitlab.example.com/${repo}.git
        clone_hosts: [gitlab.example.com]
    targets:
      local: {kind: exec, timeout: 30}
    rules:
      - name: src-only
        on: {repo: "**", branches: ["**"], paths: ["src/**"]}
        on_unknown_files: skip
        run: {target: local, command: ["true"]}
    """)


@pytest.fixture
def no_git(tmp_path):
    """Run `python -m bridge ...` in tmp_path with a PATH whose only directory holds no git."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_PYTHON")}
    env.update(SECRET_ENV, PATH=str(empty))
    (tmp_path / "rules.yaml").write_text(RULES)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    probe = subprocess.run([sys.executable, "-c", "import shutil; print(shutil.which('git'))"],
                           env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "None"
    return run


def test_help_and_check_need_no_git(no_git):
    for args in (["--help"], ["check", "--help"], ["check", "--no-secrets", "rules.yaml"],
                 ["check", "rules.yaml"], ["mirrors", "list"]):
        done = no_git(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr and "ImportError" not in done.stderr, done.stderr
    assert "rules.yaml: OK" in no_git("check", "--no-secrets", "rules.yaml").stdout


def test_a_mirror_without_git_says_so_in_one_line(no_git, tmp_path):
    body, _ = load_payload("gitlab/push_hook__docs.json")
    payload = json.loads(body)
    assert payload["total_commits_count"] > len(payload["commits"])    # capped: needs the mirror
    (tmp_path / "p.json").write_text(json.dumps(payload))
    done = no_git("explain", "--source", "gitlab", "--event", "Push Hook", "--resolve-files",
                  "--state-dir", "var", "--format", "json", "p.json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["files"]["source"] == "unknown"
    assert GIT_MISSING in result["files"]["reason"] and "\n" not in result["files"]["reason"]
    rule = result["rules"][0]
    assert rule["matched"] is False and "on_unknown_files: skip" in rule["reason"]
