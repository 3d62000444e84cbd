"""rules.yaml validation: every problem at once, each with its line, exact messages."""
import textwrap

import pytest

from bridge.config.load import load_config
from bridge.errors import ConfigError
from bridge.policies import parse_duration

ENV = {"GH_SECRET": "s3cret-value", "GL_TOKEN": "t0ken-value"}

GOOD = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
  gitlab:
    provider: gitlab
    secrets: ["${env:GL_TOKEN}", "${env:GH_SECRET}"]
targets:
  mem:
    kind: memory
    retry: {initial: 1s, maximum: 2m, give_up_after: 1h}
rules:
  - name: api-main
    on:
      repo: acme/api
      branches: [main, "release/**"]
      paths: ["src/**"]
    run:
      target: mem
      parameters: {SHA: "${sha}", BRANCH: "${branch}", LITERAL: "$${sha}"}
"""


def load(tmp_path, text, env=ENV, name="rules.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path, environ=env)


def problems(tmp_path, text, env=ENV):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return info.value.problems


def test_good_file_loads(tmp_path):
    config = load(tmp_path, GOOD)
    assert list(config.sources) == ["github", "gitlab"]
    assert config.sources["gitlab"].secrets == (b"t0ken-value", b"s3cret-value")
    assert config.targets["mem"].retry.initial == 1.0
    assert config.targets["mem"].retry.maximum == 120.0
    assert config.targets["mem"].retry.give_up_after == 3600.0
    assert [r.name for r in config.rules] == ["api-main"]
    assert config.rules[0].line == 13
    assert len(config.version) == 12


def test_every_problem_at_once_with_lines(tmp_path):
    text = """\
    sources:
      github:
        provider: githb
        secrets: ["${env:NOPE_SECRET}"]
    targets:
      mem:
        kind: memory
        tokn: x
      other:
        kind: jenkin
    rules:
      - name: a
        on:
          repo: acme/api
          branches: [main]
          branches-ignore: [dev]
          pahts: [x]
        run:
          target: mam
      - name: a
        on: {repo: "acme/*", tags: ["v["], events: [pushh]}
        run: {target: mem, parameters: {X: "${shaa}"}}
      - name: c
        on: {repo: x}
        run: {target: mem, parameters: {T: "${env:GH_SECRET}"}}
        on_unknown_files: maybe
    """
    assert problems(tmp_path, text) == [
        "rules.yaml:3: source 'github': unknown provider 'githb' (did you mean 'github'?); known: github, gitlab, gitea, forgejo, bitbucket",
        "rules.yaml:4: source 'github': secret ${env:NOPE_SECRET}: environment variable NOPE_SECRET is not set or empty",
        "rules.yaml:8: unknown key 'tokn' in target 'mem' (kind memory)",
        "rules.yaml:10: target 'other': unknown target kind 'jenkin' (did you mean 'jenkins'?); known kinds: codebuild, exec, jenkins, memory",
        "rules.yaml:16: rule 'a': 'branches' and 'branches-ignore' cannot both be set (GitHub forbids it too: use '!' patterns in 'branches')",
        "rules.yaml:17: rule 'a': unknown key 'pahts' in 'on' (did you mean 'paths'?)",
        "rules.yaml:19: rule 'a': unknown target 'mam' (did you mean 'mem'?)",
        "rules.yaml:20: rule 'a': duplicate rule name (first at line 12)",
        "rules.yaml:21: rule 'a': on.tags: bad pattern 'v[': unclosed '['",
        "rules.yaml:21: rule 'a': unknown event 'pushh' in on.events (did you mean 'push'?); known: push, tag, delete, pull_request, comment",
        "rules.yaml:22: rule 'a': template '${shaa}' names an unknown field (did you mean '${sha}'?); fields: action, after, base_ref, before, branch, delivery, head_ref, head_repo, head_sha, kind, number, provider, pusher, ref, ref_name, repo, sha, short_sha, source, tag",
        "rules.yaml:25: rule 'c': secret references like '${env:GH_SECRET}' are not allowed in 'run:' (they would be stored with the job); give the target the secret instead",
        "rules.yaml:26: rule 'c': on_unknown_files must be 'run' or 'skip', not 'maybe'",
    ]


def test_missing_secret_names_the_reference_never_a_value(tmp_path):
    found = problems(tmp_path, GOOD, env={"GH_SECRET": "s3cret-value"})
    assert found == ["rules.yaml:7: source 'gitlab': secret ${env:GL_TOKEN}: environment variable "
                     "GL_TOKEN is not set or empty"]
    assert not any("s3cret-value" in p for p in found)


def test_literal_secret_is_refused(tmp_path):
    text = GOOD.replace('["${env:GH_SECRET}"]', '["hunter2"]', 1)
    assert problems(tmp_path, text) == [
        "rules.yaml:4: source 'github': secrets must be references like ${env:NAME}, ${file:PATH} "
        "or ${credential:NAME}, not literal values"]


def test_secret_from_file_and_credential(tmp_path):
    (tmp_path / "gh").write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "gl").write_text("from-credential")
    text = GOOD.replace("${env:GH_SECRET}", f"${{file:{tmp_path}/gh}}").replace(
        '"${env:GL_TOKEN}", ', '"${credential:gl}", ')
    config = load(tmp_path, text, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.sources["github"].secrets == (b"from-file",)
    assert config.sources["gitlab"].secrets == (b"from-credential", b"from-file")


def test_credential_without_systemd(tmp_path):
    text = GOOD.replace("${env:GH_SECRET}", "${credential:gh}")
    assert problems(tmp_path, text, env={"GL_TOKEN": "x"}) == [
        "rules.yaml:4: source 'github': secret ${credential:gh}: $CREDENTIALS_DIRECTORY is not set "
        "(add LoadCredential= to the systemd unit)",
        "rules.yaml:7: source 'gitlab': secret ${credential:gh}: $CREDENTIALS_DIRECTORY is not set "
        "(add LoadCredential= to the systemd unit)",
    ]


@pytest.mark.parametrize("text, expected", [
    ("a: &x [1]\nb: *x\n",
     "rules.yaml:1: YAML anchors and aliases (&name, *name) are not supported in rules.yaml"),
    ("a: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
     "rules.yaml:1: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("a: !!python/name:os.system x\n",
     "rules.yaml:1: unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'"),
    ("sources: [\n", "rules.yaml:2: invalid YAML: did not find expected node content"),
    ("- just\n- a list\n", "rules.yaml:1: the file must be a mapping with sources, targets and rules"),
])
def test_unsafe_or_broken_yaml(tmp_path, text, expected):
    assert problems(tmp_path, text) == [expected]


def test_duplicate_keys_join_every_other_problem_with_the_rule_named(tmp_path):
    text = GOOD.replace("    provider: gitlab\n", "    provider: gitlab\n    provider: gitlab\n") + """\
      target: mem
  - name: second
    on: {repo: acme/api, branches: [main]}
    on: {repo: acme/web}
    run: {target: mem, parameters: {A: "${sha}", A: "${shaa}"}}
  - name: third
    on: {repo: acme/api, pahts: [x]}
    run: {target: nope}
targets: {}
"""
    assert problems(tmp_path, text) == [
        "rules.yaml:7: source 'gitlab': duplicate key 'provider' (first at line 6)",
        "rules.yaml:22: rule 'api-main': duplicate key 'target' (first at line 20)",
        "rules.yaml:25: rule 'second': duplicate key 'on' (first at line 24)",
        "rules.yaml:26: rule 'second': duplicate key 'A' (first at line 26)",
        "rules.yaml:28: rule 'third': unknown key 'pahts' in 'on' (did you mean 'paths'?)",
        "rules.yaml:29: rule 'third': unknown target 'nope'",
        "rules.yaml:30: duplicate key 'targets' (first at line 9)",
    ]


def test_duplicate_top_level_key_keeps_the_first_value(tmp_path):
    assert problems(tmp_path, "sources: {}\nsources: {}\n") == [
        "rules.yaml:1: no sources: add at least one under 'sources:'",
        "rules.yaml:2: duplicate key 'sources' (first at line 1)",
    ]


def test_billion_laughs_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i-1}"] * 9) + "]")
    found = problems(tmp_path, "\n".join(lines) + "\n")
    assert found == ["rules.yaml:1: YAML anchors and aliases (&name, *name) are not supported in rules.yaml"]


def test_yaml_on_key_is_not_true(tmp_path):
    # YAML 1.1 reads a bare `on` as the boolean true; rules.yaml must not.
    config = load(tmp_path, GOOD)
    assert config.rules[0].repos.sources == ("acme/api",)


def test_only_negative_patterns(tmp_path):
    text = GOOD.replace('[main, "release/**"]', '["!main"]')
    [msg] = problems(tmp_path, text)
    assert msg.startswith("rules.yaml:16: rule 'api-main': on.branches: ")


def test_unknown_top_level_and_settings(tmp_path):
    text = GOOD + "setings: {}\nsettings:\n  durability: fast\n  workers: 0\n"
    assert problems(tmp_path, text) == [
        "rules.yaml:21: unknown key 'setings' in the top level (did you mean 'settings'?)",
        "rules.yaml:23: settings.durability must be 'full' or 'normal', not 'fast'",
        "rules.yaml:24: settings.workers must be a positive integer",
    ]


def test_settings(tmp_path):
    config = load(tmp_path, GOOD + "settings:\n  durability: normal\n  max_body_bytes: 1000\n"
                                   "  lease_seconds: 2m\n")
    assert config.settings.durability == "normal"
    assert config.settings.max_body_bytes == 1000
    assert config.settings.lease_seconds == 120.0


def test_shipped_rules_yaml_is_valid():
    from pathlib import Path
    path = Path(__file__).resolve().parents[3] / "rules.yaml"
    text = path.read_text().replace("${file:var/dev-secret}", "${env:DEV}")
    config = load_config(path, text=text, environ={"DEV": "x"})
    assert config.rules


@pytest.mark.parametrize("value, seconds", [(5, 5.0), ("5s", 5.0), ("10m", 600.0), ("24h", 86400.0),
                                            ("30d", 2592000.0), ("250ms", 0.25)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-1", True, "5 parsecs", float("nan"), float("inf")])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_database_url_from_a_secret_reference_stays_out_of_repr(tmp_path):
    env = {**ENV, "DBURL": "postgresql://bridge:hunter2@db.example.com/bridge"}
    config = load(tmp_path, GOOD + "settings:\n  database_url: ${env:DBURL}\n", env=env)
    assert config.settings.database_url == env["DBURL"]
    assert "hunter2" not in repr(config) and "hunter2" not in repr(config.settings)
    env["DBURL"] = "mysql://x"
    assert problems(tmp_path, GOOD + "settings:\n  database_url: ${env:DBURL}\n", env=env) == [
        "rules.yaml:22: settings.database_url must be a sqlite:// or postgresql:// URL "
        "(or a secret reference to one)"]


def test_templates_in_any_exec_command_are_refused(tmp_path):
    text = GOOD.replace("""    run:
      target: mem
      parameters: {SHA: "${sha}", BRANCH: "${branch}", LITERAL: "$${sha}"}""", """    run:
      target: sh
      command: ["sh", "-c", "deploy ${branch}"]""") + "  - name: safe\n    on: {repo: x}\n" \
        "    run: {target: sh, command: [\"sh\", \"-c\", 'deploy \"$BRIDGE_BRANCH\"'], cwd: /tmp}\n" \
        "  - name: argv\n    on: {repo: x}\n    run: {target: sh, command: [make, \"BRANCH=${branch}\"]}\n"
    text = text.replace("targets:\n", "targets:\n  sh: {kind: exec}\n")
    assert problems(tmp_path, text) == [
        "rules.yaml:21: rule 'api-main': command: templates are not allowed in an exec command's "
        "argv ('${branch}'); pass it as an environment variable instead: env: {BRANCH: \"${branch}\"} "
        "and use \"$BRANCH\" in a script",
        "rules.yaml:27: rule 'argv': command: templates are not allowed in an exec command's "
        "argv ('${branch}'); pass it as an environment variable instead: env: {BRANCH: \"${branch}\"} "
        "and use \"$BRANCH\" in a script"]


def test_unclosed_template_is_a_problem_with_its_line(tmp_path):
    text = GOOD.replace('BRANCH: "${branch}"', 'BRANCH: "${branch"')
    assert problems(tmp_path, text) == [
        "rules.yaml:20: rule 'api-main': template '${branch' has no closing '}' "
        "(write $${ for a literal '${')"]
    config = load(tmp_path, GOOD.replace('BRANCH: "${branch}"', 'BRANCH: "$${branch"'))
    assert config.rules[0].run["parameters"]["BRANCH"] == "$${branch"    # rendered later as '${branch'


def test_a_target_with_a_bad_kind_is_reported_once_not_again_by_its_rules(tmp_path):
    assert problems(tmp_path, GOOD.replace("kind: memory", "kind: memroy")) == [
        "rules.yaml:10: target 'mem': unknown target kind 'memroy' (did you mean 'memory'?); "
        "known kinds: codebuild, exec, jenkins, memory"]
    assert problems(tmp_path, GOOD.replace("target: mem", "target: [mem]")) == [
        "rules.yaml:19: rule 'api-main': 'run.target' must name a target under 'targets:' (mem)"]


def test_loading_without_secrets_reads_none_and_says_so(tmp_path):
    text = GOOD.replace("${env:GH_SECRET}", "${file:var/dev-secret}")
    assert problems(tmp_path, text)[0].startswith(
        "rules.yaml:4: source 'github': secret ${file:var/dev-secret}: cannot read")
    path = tmp_path / "rules.yaml"
    config = load_config(path, environ={}, resolve_secrets=False)
    assert config.secrets_resolved is False
    assert config.sources["github"].secrets == () and config.sources["gitlab"].secrets == ()
    assert load(tmp_path, GOOD).secrets_resolved is True
