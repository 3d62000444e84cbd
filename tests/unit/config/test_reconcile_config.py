"""Reconcile's configuration: a source's `reconcile:` and `watch:`, rules' `watch: true` and
`settings.reconcile`, checked with their lines, and in step with the editor schema."""
from __future__ import annotations

import json
import textwrap

import jsonschema
import pytest

from bridge.config.load import load_config
from bridge.config.reconcile import HookRef, ReconcilePolicy, WatchSpec
from bridge.config.schema import rules_schema
from bridge.config.yamlload import load as bridge_yaml
from bridge.errors import ConfigError

ENV = {"GH": "s", "T": "token-1", "R": "token-2"}

BASE = """\
sources:
  gh:
    provider: github
    secrets: ["${env:GH}"]
    reconcile:
      token: "${env:R}"
      api_url: https://ghe.example.com/api/v3
      hooks: [{repo: acme/api, id: 12}, {org: acme, id: 7}]
      timeout: 5s
    watch: [acme/web, {repo: acme/api, branches: [main, "release/**"], tags: ["v*"]}]
  gl:
    provider: gitlab
    secrets: ["${env:GH}"]
    report: {token: "${env:T}"}
targets:
  mem: {kind: memory}
rules:
  - name: api
    on: {source: gh, repo: acme/api, branches: [main]}
    watch: true
    run: {target: mem}
  - name: tags
    on: {source: gl, repo: group/proj, tags: ["v*"]}
    watch: true
    run: {target: mem}
settings:
  reconcile: {interval: 5m, since: 48h, max_redeliveries: 20}
"""


def load(text: str):
    return load_config("rules.yaml", text=textwrap.dedent(text), environ=ENV)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.problems


def test_everything_reconcile_reads_is_checked_into_values():
    config = load(BASE)
    gh, gl = config.sources["gh"].reconcile, config.sources["gl"].reconcile
    assert (gh.api_url, gh.token, gh.timeout) == ("https://ghe.example.com/api/v3", "token-2", 5.0)
    assert gh.hooks == (HookRef(id=12, repo="acme/api"), HookRef(id=7, org="acme"))
    # Without reconcile:, the report: token reads the refs (no hooks).
    assert (gl.api_url, gl.token, gl.hooks) == ("https://gitlab.com/api/v4", "token-1", ())
    assert config.settings.reconcile == ReconcilePolicy(interval=300.0, since=172800.0, max_redeliveries=20)
    assert config.watches == (
        WatchSpec("gh", "acme/web", ("**",), ("**",)),
        WatchSpec("gh", "acme/api", ("main", "release/**"), ("v*",)),
        WatchSpec("gh", "acme/api", ("main",), (), rule="api"),
        WatchSpec("gl", "group/proj", (), ("v*",), rule="tags"))
    assert "reconcile" not in config.sources["gh"].options and "token-2" not in repr(config.sources["gh"])


@pytest.mark.parametrize("change,expected", [
    (("token: \"${env:R}\"", "token: plain-text"),
     "rules.yaml:6: source 'gh' reconcile: 'token' must be a secret reference"),
    (("{org: acme, id: 7}", "{org: acme, id: 0}"),
     "rules.yaml:8: source 'gh' reconcile: a hook's 'id' is the host's hook id, a positive integer"),
    (("{org: acme, id: 7}", "{org: acme, repo: acme/x, id: 7}"),
     "rules.yaml:8: source 'gh' reconcile: a hook names its repository (repo: or project:) or"),
    (("timeout: 5s", "timeout: 5s\n      bogus: 1"), "rules.yaml:10: unknown key 'bogus' in source 'gh' reconcile"),
    (("tags: [\"v*\"]}]", "tags: [\"[\"]}]"), "rules.yaml:10: source 'gh' watch.tags: bad pattern '['"),
    (("on: {source: gh, repo: acme/api,", "on: {source: gh, repo: \"acme/*\","),
     "rules.yaml:20: rule 'api': watch: true needs the rule's on.repo to name repositories without wildcards"),
    (("    watch: true\n    run: {target: mem}\n  - name: tags", "    watch: yes please\n    run: {target: mem}\n  - name: tags"),
     "rules.yaml:20: rule 'api': 'watch' must be true or false"),
    (("max_redeliveries: 20", "max_redeliveries: 0"),
     "rules.yaml:27: settings.reconcile.max_redeliveries must be a positive integer"),
    (("interval: 5m", "interval: soon"), "rules.yaml:27: settings.reconcile.interval: 'soon' is not a duration"),
])
def test_each_mistake_is_named_with_its_line(change, expected):
    found = problems(BASE.replace(*change))
    assert any(p.startswith(expected) for p in found), found


def test_a_rule_without_a_source_needs_exactly_one_source_with_api_access():
    text = BASE.replace("on: {source: gh, repo: acme/api,", "on: {repo: acme/api,")
    assert any("rule 'api': watch: true needs on.source: several sources have API tokens (gh, gl)" in p
               for p in problems(text))
    text = BASE.replace("    report: {token: \"${env:T}\"}\n", "")
    assert problems(text) == ["rules.yaml:23: rule 'tags': watch: true: source 'gl' has no "
                              "reconcile: or report: token to read branch heads with"]


def test_the_editor_schema_knows_every_reconcile_key_and_refuses_others():
    validator = jsonschema.Draft202012Validator(rules_schema())
    doc = json.loads(json.dumps(bridge_yaml(BASE)))
    assert [e.message for e in validator.iter_errors(doc)] == []
    for path, key in ((("sources", "gh", "reconcile"), "bogus"), (("settings", "reconcile"), "bogus"),
                      (("sources", "gh", "reconcile", "hooks", 0), "bogus"),
                      (("sources", "gh", "watch", 1), "bogus")):
        bad = json.loads(json.dumps(doc))
        target = bad
        for step in path:
            target = target[step]
        target[key] = 1
        assert list(validator.iter_errors(bad)), path
        assert any(f"unknown key '{key}'" in p for p in problems(json_to_yaml(bad))), path
    bad = json.loads(json.dumps(doc))
    bad["rules"][0]["watch"] = "yes"
    assert list(validator.iter_errors(bad))


def json_to_yaml(doc) -> str:
    return json.dumps(doc)      # JSON is YAML


def test_reconcile_is_refused_for_a_host_without_its_apis():
    text = BASE.replace("  gl:\n    provider: gitlab", "  gl:\n    provider: gitea\n    reconcile: {token: \"${env:T}\", api_url: https://gitea.example.com/api/v1}")
    assert any("source 'gl': reconcile is not available for provider 'gitea' (GitHub and GitLab only)" in p
               for p in problems(text))
