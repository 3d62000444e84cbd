"""Commit-status configuration: a source's `report:` block, its defaults, overrides and problems
(each with its line), and a missing token named but never shown."""
from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.policies import FollowPolicy, RetryPolicy
from helpers.statuses import ENV, GH_TOKEN, GL_TOKEN, rules


# --- configuration -------------------------------------------------------------------------------


REPORTING = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
    report: {token: "${env:GH_STATUS_TOKEN}"}
  ghes:
    provider: github
    secrets: ["${env:GH_SECRET}"]
    report:
      token: "${env:GH_STATUS_TOKEN}"
      api_url: https://ghe.example.com/api/v3/
      timeout: 3s
      retry: {initial: 1s, give_up_after: 1h}
  gitlab:
    provider: gitlab
    secrets: ["${env:GL_SECRET}"]
    report: {token: "${env:GL_STATUS_TOKEN}"}
  quiet:
    provider: gitlab
    secrets: ["${env:GL_SECRET}"]
targets:
  mem: {kind: memory}
settings:
  follow: {interval: 500ms, max_interval: 30s, give_up_after: 6h, concurrency: 2}
rules:
  - name: build
    on: {branches: [main]}
    run: {target: mem}
  - name: docs
    context: ci/docs
    report_skipped: true
    on: {branches: [main], paths: ["docs/**"]}
    run: {target: mem}
  - name: silent
    report: false
    on: {branches: [main]}
    run: {target: mem}
"""


def test_report_config_defaults_and_overrides(tmp_path):
    config = rules(REPORTING, tmp_path)
    gh, ghes, gl = (config.sources[n].report for n in ("github", "ghes", "gitlab"))
    assert (gh.api_url, gh.token, gh.timeout) == ("https://api.github.com", GH_TOKEN, 10.0)
    assert (ghes.api_url, ghes.timeout) == ("https://ghe.example.com/api/v3", 3.0)
    assert ghes.retry == RetryPolicy(initial=1.0, maximum=300.0, give_up_after=3600.0)
    assert (gl.api_url, gl.token) == ("https://gitlab.com/api/v4", GL_TOKEN)
    assert config.sources["quiet"].report is None
    assert GH_TOKEN not in repr(config.sources["github"]) and GH_TOKEN not in repr(gh)
    assert "report" not in config.sources["github"].options
    assert [(r.context, r.report, r.report_skipped) for r in
            map(config.rule_report, ("build", "docs", "silent"))] == [
        ("bridge/build", True, False), ("ci/docs", True, True), ("bridge/silent", False, False)]
    assert config.settings.follow == FollowPolicy(interval=0.5, max_interval=30.0, give_up_after=21600.0,
                                                  concurrency=2)


def test_report_config_problems_each_with_its_line(tmp_path):
    with pytest.raises(ConfigError) as exc:
        rules("""\
        sources:
          github:
            provider: github
            secrets: ["${env:GH_SECRET}"]
            report:
              token: ghp_literal_token_in_the_file
              api_url: ftp://example.com
              timout: 5
        targets:
          mem: {kind: memory}
        settings:
          follow: {intervall: 1s, concurrency: 0}
        rules:
          - name: a
            context: 42
            report: "no"
            on: {branches: [main]}
            run: {target: mem}
          - name: b
            report: false
            report_skipped: true
            on: {branches: [main]}
            run: {target: mem}
        """, tmp_path)
    assert exc.value.problems == [
        "rules.yaml:6: source 'github' report: 'token' must be a secret reference like "
        "${credential:github-token}",
        "rules.yaml:7: source 'github' report: api_url must be an http:// or https:// URL without "
        "query string, not 'ftp://example.com'",
        "rules.yaml:8: unknown key 'timout' in source 'github' report (did you mean 'timeout'?)",
        "rules.yaml:12: unknown key 'intervall' in settings.follow (did you mean 'interval'?)",
        "rules.yaml:12: settings.follow.concurrency must be a positive integer",
        "rules.yaml:15: rule 'a': context must be a one-line name of at most 255 characters, such as 'ci/a'",
        "rules.yaml:16: rule 'a': report must be true or false",
        "rules.yaml:21: rule 'b': report_skipped: true needs report: true (report: false posts no "
        "status at all)",
    ]
    assert "ghp_literal_token_in_the_file" not in str(exc.value)


def test_a_missing_token_is_named_never_shown(tmp_path):
    with pytest.raises(ConfigError) as exc:
        rules(REPORTING, tmp_path, environ={k: v for k, v in ENV.items() if k != "GL_STATUS_TOKEN"})
    assert exc.value.problems == ["rules.yaml:17: source 'gitlab' report: secret ${env:GL_STATUS_TOKEN}: "
                                  "environment variable GL_STATUS_TOKEN is not set or empty"]
