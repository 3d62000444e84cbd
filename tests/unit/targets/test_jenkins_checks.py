"""Checks of a Jenkins target: `check --online` by rule and line against the stand-in, option and run
validation, and tokens in rules.yaml that must be secret references."""
from __future__ import annotations

import pytest

from bridge.targets.jenkins import JenkinsTarget
from helpers.jenkins_target import standin, target  # noqa: F401  (fixture)


def test_check_online_reports_by_rule_and_line(standin):
    standin.add_job("team/lib/build", ["GIT_SHA", "BRIDGE_DELIVERY"])
    runs = [
        ("api-main", 12, {"target": "ci", "job": "team/api/build", "parameters": {"GIT_SHA": "${sha}"}}),
        ("typo", 20, {"target": "ci", "job": "team/api/biuld"}),
        ("extra", 25, {"target": "ci", "job": "team/lib/build", "parameters": {"GIT_SHA": "x", "FLAVOR": "y"}}),
        ("legacy", 30, {"target": "ci", "job": "old", "parameters": {"GIT_SHA": "x"}}),
        ("legacy-ok", 34, {"target": "ci", "job": "old", "unique": False}),   # defaults are used
        ("bare", 38, {"target": "ci", "job": "plain"}),
        ("bare-ok", 42, {"target": "ci", "job": "plain", "unique": False}),
        ("bare-delay-ok", 44, {"target": "ci", "job": "plain", "unique": False, "delay": 0}),
        ("folder", 46, {"target": "ci", "job": "team/api"}),
        ("templated", 50, {"target": "ci", "job": "${repo}/build"}),
    ]
    assert target(standin).check_online(runs) == [
        "rule 'typo' (rules.yaml:20): job 'team/api/biuld' not found on target 'ci'",
        "rule 'extra' (rules.yaml:25): job 'team/lib/build' on target 'ci' does not define "
        "parameter(s) FLAVOR: Jenkins drops them silently",
        "rule 'legacy' (rules.yaml:30): job 'old' on target 'ci' lacks a BRIDGE_DELIVERY parameter: "
        "Jenkins may merge two pushes into one build (add a string parameter BRIDGE_DELIVERY to the "
        "job, or set unique: false)",
        "rule 'bare' (rules.yaml:38): job 'plain' on target 'ci' takes no parameters but the rule "
        "sends BRIDGE_DELIVERY: Jenkins answers HTTP 400 (add a string parameter BRIDGE_DELIVERY to "
        "the job, or set unique: false)",
        "rule 'folder' (rules.yaml:46): 'team/api' on target 'ci' is a folder, not a job",
    ]
    assert standin.posts() == []                     # a check never starts a build


def test_check_online_stops_at_refused_credentials(standin):
    runs = [("a", 1, {"job": "team/api/build"}), ("b", 2, {"job": "old"})]
    assert target(standin, token="nope").check_online(runs) == [
        "target 'ci': Jenkins refused user 'bridge' on target 'ci' "
        "(HTTP 401: Invalid password/token for user: bridge)"]


@pytest.mark.parametrize("options, problems", [
    ({"url": "https://ci.example.com", "user": "bridge", "token": "t"}, []),
    ({"url": "ci.example.com"}, ["url must be an http:// or https:// URL, not 'ci.example.com'"]),
    ({"url": "https://ci.example.com", "user": "bridge"},
     ["'user' and 'token' go together (the token is the user's API token)"]),
    ({"url": "https://ci.example.com", "timeout": 0},
     ["timeout must be a positive number of seconds, not 0"]),
    ({"url": "https://ci.example.com", "verify_tls": "no"}, ["verify_tls must be true or false"]),
])
def test_validate(options, problems):
    assert JenkinsTarget.validate({"kind": "jenkins", **options}) == problems


@pytest.mark.parametrize("run, problems", [
    ({"job": "team/api/build", "parameters": {"A": "${sha}"}, "unique": True, "delay": "0sec"}, []),
    ({"job": "job/team/job/build"}, ["'run.job' 'job/team/job/build': write the folder path "
                                     "('team/api/build'), not the URL path ('job/team/job/api/job/build')"]),
    ({"job": "team//build"}, ["'run.job' 'team//build': write folder paths as 'team/api/build'"]),
    ({"job": "x", "parameters": {"token": "1"}},
     ["'run.parameters.token': Jenkins reads 'token' itself; it cannot be a job parameter"]),
    ({"job": "x", "parameters": {"BRIDGE_DELIVERY": "1"}},
     ["'run.parameters.BRIDGE_DELIVERY': the bridge sets BRIDGE_DELIVERY itself "
      "(set unique: false to send your own)"]),
    ({"job": "x", "parameters": {"BRIDGE_DELIVERY": "1"}, "unique": False}, []),
    ({"job": "x", "unique": "yes"}, ["'run.unique' must be true or false"]),
    ({"job": "x", "delay": "soon"}, ["'run.delay' must be seconds, e.g. 0 or '0sec', not 'soon'"]),
])
def test_validate_run(run, problems):
    assert JenkinsTarget.validate_run({"target": "ci", **run}) == problems


RULES_WITH_TOKENS = """\
sources:
  github: {{provider: github, secrets: ["${{env:GH_SECRET}}"]}}
targets:
  ci:
    kind: jenkins
    url: https://ci.example.com
    user: bridge
    token: {token}
    build_token: {build_token}
rules: []
"""


def test_tokens_in_rules_yaml_must_be_secret_references(tmp_path):
    from bridge.config.load import load_config
    from bridge.errors import ConfigError
    env = {"GH_SECRET": "s", "JENKINS_TOKEN": "11d8c3a0f6b2", "BUILD_TOKEN": "b7-build-token-9f"}
    path = tmp_path / "rules.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=env, text=RULES_WITH_TOKENS.format(
            token="11d8c3a0f6b2", build_token="b7-build-token-9f"))
    assert info.value.problems == [
        "rules.yaml:8: target 'ci': 'token' must be a secret reference like "
        "${credential:ci-token}, not literal text",
        "rules.yaml:9: target 'ci': 'build_token' must be a secret reference like "
        "${credential:ci-build_token}, not literal text"]
    assert "11d8c3a0f6b2" not in str(info.value) and "b7-build-token-9f" not in str(info.value)

    config = load_config(path, text=RULES_WITH_TOKENS.format(
        token="${env:JENKINS_TOKEN}", build_token="${env:BUILD_TOKEN}"), environ=env)
    options = config.targets["ci"].options
    assert (options["token"], options["build_token"]) == ("11d8c3a0f6b2", "b7-build-token-9f")
