"""The editor schema (`cibridge schema`) and the validator stay in step: every key the validator
accepts is in the schema and every key of the schema is accepted by the validator, at every
level; the shipped rules.yaml and the README's examples pass both; a misspelt key fails both."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from bridge.config.load import load_config
from bridge.config.schema import rules_schema
from bridge.config.yamlload import load as bridge_yaml
from bridge.errors import ConfigError
from bridge.targets import TARGET_KINDS, target_class


def parse(text: str):
    """YAML as the bridge (and an editor's YAML 1.2 parser) reads it: `on:` is a key, not True."""
    return json.loads(json.dumps(bridge_yaml(text)))

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = rules_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# A small valid document; the places below reach into it.
BASE = {
    "sources": {"gh": {"provider": "github", "secrets": ["${env:GH}"],
                       "report": {"token": "${env:T}", "retry": {"initial": "5s"}}}},
    "targets": {
        "ci": {"kind": "jenkins", "url": "https://jenkins.example.com", "retry": {"initial": "5s"},
               "policy": {"max_running": 4, "breaker": {"failures": 3}}},
        "aws": {"kind": "codebuild", "region": "eu-west-1"},
        "local": {"kind": "exec"},
        "mem": {"kind": "memory"}},
    "rules": [
        {"name": "jenkins", "on": {"repo": "**"}, "run": {"target": "ci", "job": "a/b"},
         "policy": {"on_newer": "coalesce"}},
        {"name": "codebuild", "on": {"repo": "**"}, "run": {"target": "aws", "project": "p"}},
        {"name": "exec", "on": {"repo": "**"}, "run": {"target": "local", "command": ["true"]}},
        {"name": "memory", "on": {"repo": "**"}, "run": {"target": "mem"}}],
    "settings": {"follow": {"interval": "2s"}, "mirrors": {"max_age": "30d"}},
}
RUN_RULE = {"jenkins": 0, "codebuild": 1, "exec": 2, "memory": 3}
TARGET_OF = {"jenkins": "ci", "codebuild": "aws", "exec": "local", "memory": "mem"}


def places():
    """(name, path into BASE, the schema object that describes it)."""
    props = SCHEMA["properties"]
    source = props["sources"]["additionalProperties"]
    rule = props["rules"]["items"]
    settings = props["settings"]
    out = [("top", (), SCHEMA), ("source", ("sources", "gh"), source),
           ("source report", ("sources", "gh", "report"), source["properties"]["report"]),
           ("report retry", ("sources", "gh", "report", "retry"),
            source["properties"]["report"]["properties"]["retry"]),
           ("rule", ("rules", 0), rule), ("on", ("rules", 0, "on"), rule["properties"]["on"]),
           ("settings", ("settings",), settings),
           ("follow", ("settings", "follow"), settings["properties"]["follow"]),
           ("mirrors", ("settings", "mirrors"), settings["properties"]["mirrors"])]
    for branch in props["targets"]["additionalProperties"]["allOf"]:
        kind = branch["if"]["properties"]["kind"]["const"]
        out.append((f"target {kind}", ("targets", TARGET_OF[kind]), branch["then"]))
    out.append(("target retry", ("targets", "ci", "retry"),
                next(b["then"] for b in props["targets"]["additionalProperties"]["allOf"]
                     if b["then"]["properties"]["kind"]["const"] == "jenkins")["properties"]["retry"]))
    jenkins = next(b["then"] for b in props["targets"]["additionalProperties"]["allOf"]
                   if b["then"]["properties"]["kind"]["const"] == "jenkins")
    out += [("target policy", ("targets", "ci", "policy"), jenkins["properties"]["policy"]),
            ("breaker", ("targets", "ci", "policy", "breaker"),
             jenkins["properties"]["policy"]["properties"]["breaker"]),
            ("rule policy", ("rules", 0, "policy"), rule["properties"]["policy"])]
    for run in rule["properties"]["run"]["anyOf"]:
        kind = run["description"].rsplit(" ", 1)[1]
        out.append((f"run {kind}", ("rules", RUN_RULE[kind], "run"), run))
    return out


def at(doc, path):
    for step in path:
        doc = doc[step]
    return doc


def problems(doc) -> list[str]:
    path = Path(f"/tmp/bridge-schema-{id(doc)}.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        load_config(path, resolve_secrets=False)
        return []
    except ConfigError as exc:
        return exc.problems
    finally:
        path.unlink()


def schema_errors(doc) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(doc)]


def test_the_schema_is_valid_draft_2020_12_and_the_base_passes_both():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert problems(BASE) == [] and schema_errors(BASE) == []


def test_every_place_of_the_schema_is_covered():
    kinds = {name.split()[1] for name, _, _ in places() if name.startswith(("target ", "run "))
             and name not in ("target retry", "target policy")}
    assert kinds == set(TARGET_KINDS)


@pytest.mark.parametrize("name,path,described", places(), ids=[p[0] for p in places()])
def test_schema_keys_are_the_keys_the_validator_accepts(name, path, described):
    keys = set(described["properties"])
    assert described["additionalProperties"] is False
    # Every key of the schema: the validator does not call it unknown.
    for key in keys:
        doc = copy.deepcopy(BASE)
        target = at(doc, path)
        if key not in target:
            target[key] = None
        assert not [p for p in problems(doc) if f"unknown key '{key}'" in p], (name, key)
    # A key the schema lacks: the validator calls it unknown, and the schema refuses it too.
    doc = copy.deepcopy(BASE)
    at(doc, path)["bogus_key"] = 1
    assert any("unknown key 'bogus_key'" in p for p in problems(doc)), name
    assert schema_errors(doc), name


def test_target_kinds_and_their_keys_match_the_target_classes():
    branches = SCHEMA["properties"]["targets"]["additionalProperties"]["allOf"]
    for branch in branches:
        then = branch["then"]
        kind = then["properties"]["kind"]["const"]
        cls = target_class(kind)
        assert set(then["properties"]) == set(cls.config_keys) | {"kind", "retry", "policy"}
        assert set(then.get("required", [])) == {k for k, r in cls.config_keys.items() if r} | {"kind"}
    runs = SCHEMA["properties"]["rules"]["items"]["properties"]["run"]["anyOf"]
    assert {frozenset(r["properties"]) for r in runs} == \
        {frozenset(set(target_class(k).run_keys) | {"target"}) for k in TARGET_KINDS}


@pytest.mark.parametrize("mutate,why", [
    (lambda d: d["targets"]["ci"].update(kind="jenkinz"), "unknown kind"),
    (lambda d: d["sources"]["gh"].update(provider="gogs"), "unknown provider"),
    (lambda d: d["rules"][0]["on"].update(branch=["main"]), "branch, not branches"),
    (lambda d: d["settings"].update(durability="fast"), "durability"),
    (lambda d: d["settings"].update(log_level="loud"), "log level"),
    (lambda d: d["rules"][2]["run"].update(command="make"), "command must be a list"),
    (lambda d: d["sources"]["gh"].update(secrets=["plain-text"]), "a literal secret"),
    (lambda d: d.pop("sources"), "no sources"),
    (lambda d: d["targets"]["ci"]["policy"].update(on_newer="replace"), "on_newer"),
    (lambda d: d["targets"]["ci"]["policy"].update(rate="lots"), "rate"),
    (lambda d: d["targets"]["ci"]["policy"].update(max_running=0), "max_running"),
    (lambda d: d["rules"][0]["policy"].update(breaker={"failures": 2}), "a rule's breaker"),
])
def test_both_refuse_the_same_mistakes(mutate, why):
    doc = copy.deepcopy(BASE)
    mutate(doc)
    assert problems(doc), why
    assert schema_errors(doc), why


def test_bridge_schema_prints_the_shipped_schema_file():
    out = subprocess.run([sys.executable, "-m", "bridge", "schema"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == SCHEMA
    assert json.loads((ROOT / "rules.schema.json").read_text()) == SCHEMA, \
        "rules.schema.json is stale: cibridge schema > rules.schema.json"


def test_the_shipped_rules_yaml_points_editors_at_the_schema_and_passes_both():
    text = (ROOT / "rules.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=rules.schema.json"
    assert schema_errors(parse(text)) == []
    load_config(ROOT / "rules.yaml", resolve_secrets=False)


def readme_examples() -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [parse(b) for b in blocks]


def test_the_readme_examples_pass_both():
    examples = [e for e in readme_examples() if isinstance(e, dict) and "groups" not in e]
    full = examples[0]
    assert {"sources", "targets", "rules"} <= set(full)
    assert len(examples) >= 6
    for example in examples:
        doc = copy.deepcopy(full)           # a fragment completes the README's first example
        for section, value in example.items():
            if isinstance(value, dict):
                doc[section] = {**doc.get(section, {}), **value}
            else:
                doc[section] = value
        assert schema_errors(doc) == [], example
        assert problems(doc) == [], example
