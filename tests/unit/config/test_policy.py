"""rules.yaml `policy:` of targets and rules: values read into TargetPolicy / Policies, every
problem at once with its line, and the rate and group readers."""
from __future__ import annotations

import pytest

from bridge.config.policy import GROUP_FIELDS
from bridge.errors import InvalidValue
from bridge.events import Event
from bridge.policies import NO_POLICY, Breaker, Policies, Rate, TargetPolicy, parse_rate
from unit.config.test_load import load, problems

HEAD = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
targets:
  ci:
    kind: memory
"""


def test_a_target_policy_and_a_rule_override(tmp_path):
    config = load(tmp_path, HEAD + """\
    policy:
      max_running: 8
      rate: 30/min
      group: "${repo}/${ref}"
      max_running_per_group: 1
      on_newer: coalesce
      debounce: 10s
      breaker: {failures: 5, open_for: 60s}
rules:
  - name: api
    on: {repo: acme/api}
    run: {target: ci}
    policy: {on_newer: cancel, max_running: 2, rate: 5/s}
  - name: web
    on: {repo: acme/web}
    run: {target: ci}
""")
    policy = config.targets["ci"].policy
    assert policy == TargetPolicy(max_running=8, rate=Rate(30, 60.0), group="${repo}/${ref}",
                                  max_running_per_group=1, on_newer="coalesce", debounce=10.0,
                                  breaker=Breaker(5, 60.0))
    policies = config.policies()
    assert policies.of("ci", "web") == policy
    # A rule's own max_running and rate count its own jobs; the rest replaces the target's.
    assert policies.of("ci", "api") == TargetPolicy(
        max_running=8, rate=Rate(30, 60.0), group="${repo}/${ref}", max_running_per_group=1,
        on_newer="cancel", debounce=10.0, breaker=Breaker(5, 60.0))
    assert policies.rule_limits("api") == (2, Rate(5, 1.0))
    assert policies.rule_limits("web") == (None, None)
    assert policies.active


def test_no_policy_is_no_limit(tmp_path):
    config = load(tmp_path, HEAD + "rules: []\n")
    assert config.targets["ci"].policy == NO_POLICY and not NO_POLICY.limits
    assert not config.policies().active
    assert NO_POLICY.group == "${rule}/${ref}" and NO_POLICY.on_newer == "queue"


def test_every_policy_problem_with_its_line(tmp_path):
    assert {"repo", "ref", "branch", "sha", "rule"} <= GROUP_FIELDS
    found = problems(tmp_path, HEAD + """\
    policy:
      max_running: 0
      rate: lots
      group: "${branh}"
      on_newer: replace
      debounce: soon
      breaker: {failures: -1, open_for: 1x, half_open: 1}
      burst: 3
rules:
  - name: api
    on: {repo: acme/api}
    run: {target: ci}
    policy: {breaker: {failures: 2}, max_running_per_group: true}
""")
    assert found == [
        "rules.yaml:9: policy.max_running: must be a positive integer, not 0",
        "rules.yaml:10: policy.rate: 'lots' is not a rate (use e.g. 30/min, 5/s, 100/h)",
        "rules.yaml:11: policy.group: template '${branh}' names an unknown field (did you "
        f"mean '${{branch}}'?); fields: {', '.join(sorted(GROUP_FIELDS))}",
        "rules.yaml:12: policy.on_newer: must be one of queue, coalesce, cancel, not 'replace'",
        "rules.yaml:13: policy.debounce: 'soon' is not a duration (use e.g. 5s, 10m, 24h, 30d)",
        "rules.yaml:14: unknown key 'half_open' in target 'ci' policy.breaker",
        "rules.yaml:14: policy.breaker.failures must be a positive integer, not -1",
        "rules.yaml:14: policy.breaker.open_for: '1x' is not a duration (use e.g. 5s, 10m, 24h, 30d)",
        "rules.yaml:15: unknown key 'burst' in target 'ci' policy",
        "rules.yaml:20: rule 'api': unknown key 'breaker' in the rule's policy",
        "rules.yaml:20: rule 'api': policy.max_running_per_group: must be a positive integer, not True",
    ]


@pytest.mark.parametrize("text, rate", [
    ("30/min", Rate(30, 60.0)), ("5/s", Rate(5, 1.0)), ("100/h", Rate(100, 3600.0)),
    ("10/5m", Rate(10, 300.0)), (" 2 / day ", Rate(2, 86400.0)), ("1/0.5s", Rate(1, 0.5)),
])
def test_rates(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["30", "0/min", "5/0s", "x/min", "5/fortnight", 30, None])
def test_not_rates(text):
    with pytest.raises(InvalidValue, match="is not a rate"):
        parse_rate(text)


def test_rates_print_as_written():
    assert [str(r) for r in (Rate(30, 60), Rate(5, 1), Rate(100, 3600), Rate(10, 300))] == \
        ["30/min", "5/1s", "100/h", "10/5min"]
    assert Rate(30, 60).per_second == 0.5


def test_policies_without_rules_fall_back_to_no_policy():
    assert Policies().of("ci", "api") == NO_POLICY


def test_the_group_template_is_the_rules_else_the_targets_else_the_rule_and_the_ref(tmp_path):
    config = load(tmp_path, HEAD + """\
    policy: {group: "${repo}"}
rules:
  - name: own
    on: {repo: acme/api}
    run: {target: ci}
    policy: {group: "${rule}:${branch}"}
  - name: targets
    on: {repo: acme/api}
    run: {target: ci}
""")
    event = Event(provider="github", source="github", delivery_id="d-1", kind="push", repo="acme/api",
                  ref="refs/heads/main", ref_name="main", before="1" * 40, after="2" * 40, sha="2" * 40)
    groups = {v.rule: v.jobs[0].group for v in config.ruleset.match(event)}
    assert groups == {"own": "own:main", "targets": "acme/api"}
    plain = load(tmp_path, HEAD + "rules:\n  - name: r\n    on: {repo: acme/api}\n    run: {target: ci}\n")
    assert [v.jobs[0].group for v in plain.ruleset.match(event)] == ["r/refs/heads/main"]
