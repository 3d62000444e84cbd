"""`cibridge check --online` against the Jenkins stand-in and moto: jobs and projects reported by rule
and line."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers.targets_e2e import AWS_UNSET, REGION, bridge_env, moto, rules, standin  # noqa: F401  (fixtures)


# --- cibridge check --online ----------------------------------------------------------------

CHECKED = {   # rule name -> its `run:`
    "good": '{target: ci, job: team/api/build, parameters: {GIT_SHA: "${sha}", BRANCH: "${branch}"}}',
    "typo": "{target: ci, job: team/api/biuld}",
    "extra-param": '{target: ci, job: team/api/build, parameters: {GIT_SHA: "${sha}", CHANNEL: beta}}',
    "legacy": '{target: ci, job: legacy, parameters: {GIT_SHA: "${sha}"}}',
    "legacy-merging": '{target: ci, job: legacy, unique: false, parameters: {GIT_SHA: "${sha}"}}',
    "legacy-bare": "{target: ci, job: legacy, unique: false}",        # 400 on /build, then defaults
    "plain-now": "{target: ci, job: plain, unique: false, delay: 0}",  # /build?delay=0sec: fine
    "cb-good": "{target: aws, project: api}",
    "cb-typo": "{target: aws, project: apj}",
}


def checked_rules(*names: str) -> str:
    return "".join(f"  - name: {n}\n    on: {{repo: f110/test}}\n    run: {CHECKED[n]}\n" for n in names)


def check_online(tmp_path: Path, text: str, env: dict, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    full_env = {**os.environ, **env, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for key in AWS_UNSET:
        full_env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "bridge", "check", "--online", str(path)],
                          env=full_env, capture_output=True, text=True, timeout=60)


def line_of(text: str, rule: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.endswith(f"name: {rule}"))


def test_check_online_reports_jobs_and_projects_by_rule_and_line(standin, moto, tmp_path):
    standin.add_job("legacy", ["GIT_SHA"])
    standin.add_job("plain")
    text = rules(jenkins=standin.url, codebuild=moto[0], rules_yaml=checked_rules(*CHECKED))
    result = check_online(tmp_path, text, bridge_env(standin), "ci-rules.yaml")

    at = {rule: f"rule '{rule}' (ci-rules.yaml:{line_of(text, rule)})" for rule in
          ("typo", "extra-param", "legacy", "cb-typo")}
    assert result.returncode == 1, result.stdout + result.stderr
    # One stream, in order: the offline OK line, each problem, the count.
    assert result.stderr == ""
    assert re.fullmatch(r".*ci-rules\.yaml: OK \(1 sources, 2 targets, \d+ rules; version \w+\)",
                        result.stdout.splitlines()[0])
    assert result.stdout.splitlines()[1:] == [
        f"{at['typo']}: job 'team/api/biuld' not found on target 'ci'",
        f"{at['extra-param']}: job 'team/api/build' on target 'ci' does not define parameter(s) "
        "CHANNEL: Jenkins drops them silently",
        f"{at['legacy']}: job 'legacy' on target 'ci' lacks a BRIDGE_DELIVERY parameter: Jenkins may "
        "merge two pushes into one build (add a string parameter BRIDGE_DELIVERY to the job, or set "
        "unique: false)",
        f"{at['cb-typo']}: project 'apj' not found in {REGION}",
        "online check: 4 problem(s)",
    ]
    assert standin.users["bridge"] not in result.stdout + result.stderr

    fixed = rules(jenkins=standin.url, codebuild=moto[0],
                  rules_yaml=checked_rules("good", "legacy-merging", "legacy-bare", "plain-now", "cb-good"))
    ok = check_online(tmp_path, fixed, bridge_env(standin), "ci-rules.yaml")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == "" and "every target answered" in ok.stdout
