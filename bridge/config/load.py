"""Configuration stage: rules.yaml -> a validated, immutable `Config` (sources, targets, rules, settings).

Input: the file's path (or text). Output: `Config`, or `ConfigError` carrying every problem at
once, each as `rules.yaml:LINE: rule 'NAME': message`. Secret references are resolved here so a
missing secret stops the start, naming the reference and never a value; `resolve_secrets=False`
(explain, `cibridge check --no-secrets`) checks their syntax only and leaves their values out.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import os

from bridge import globs, templates
from bridge.config.keys import MAX_RULES_FILE, TOP_KEYS
from bridge.config.model import Config
from bridge.config.problems import Problems, reading_secrets, resolving
from bridge.config.reconcile import rule_watches
from bridge.config.rulecheck import parse_rules
from bridge.config.settings import parse_settings
from bridge.config.sources import parse_sources, parse_targets, source_watches
from bridge.config.yamlload import LineDict, LineList, YamlError, load
from bridge.errors import ConfigError


def load_config(path, *, environ=os.environ, text: str | None = None,
                resolve_secrets: bool = True) -> Config:
    """Read and validate rules.yaml; raise ConfigError listing every problem.

    Relative `${file:...}` secret paths are relative to the file's directory. With
    `resolve_secrets=False` no secret is read (a missing one is no problem): secret values are None
    (target options keep the reference text) and `secrets_resolved` is False; for explain and
    checks, never for serving.
    """
    with reading_secrets(path, resolve_secrets), paused_gc():
        return _load_config(str(path), environ, text)


@contextlib.contextmanager
def paused_gc():
    """No cyclic garbage collection while a load builds its objects: tens of thousands of
    them, which the collector would walk again and again (a quarter of a 10,000-rule load) to
    find nothing; it runs as usual after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def forget_shared() -> None:
    """Drop what loads share between rules (pattern lists, their checks, compiled templates):
    each load starts afresh, and a process done with loading (the supervisor, once it handed
    the rules over) frees them."""
    globs.forget_shared()
    templates.forget_shared()


def read_rules_text(path) -> str:
    """rules.yaml's text, read within MAX_RULES_FILE and as UTF-8 (CRLF kept: it is part of
    the version); raises ConfigError."""
    filename = os.path.basename(path) or path
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_RULES_FILE + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(raw) > MAX_RULES_FILE:
        raise ConfigError([f"{filename}:1: file is larger than {MAX_RULES_FILE} bytes"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{filename}:1: file is not UTF-8"]) from None


def rules_version(text: str) -> str:
    """The version a rules text is known by (logs, /readyz, stored with each delivery)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _load_config(path, environ, text) -> Config:
    filename = os.path.basename(path) or path
    forget_shared()
    if text is None:
        text = read_rules_text(path)
    version = rules_version(text)
    problems = Problems(filename)
    duplicates: list = []
    try:
        doc = load(text, duplicates=duplicates)
    except YamlError as exc:
        raise ConfigError([f"{filename}:{exc.line}: {exc.message}"]) from None
    if not isinstance(doc, LineDict):
        raise ConfigError([f"{filename}:1: the file must be a mapping with sources, targets and rules"])
    problems.unknown_keys(doc, TOP_KEYS, "the top level")
    _duplicate_problems(doc, duplicates, problems)

    settings = parse_settings(doc.get("settings"), problems, environ)
    sources = parse_sources(doc, problems, environ)
    broken_targets: set = set()      # declared, but already reported: rules using them are not
    targets = parse_targets(doc, problems, environ, broken_targets)
    rule_reports: dict = {}
    rule_policies: dict = {}
    rules = parse_rules(doc, problems, sources, targets, rule_reports, broken_targets, rule_policies)
    watches = source_watches(doc, problems) + rule_watches(doc, rules, sources, problems)
    if problems.items:
        raise ConfigError(problems.messages())
    return Config(path=path, version=version, sources=sources, targets=targets, rules=tuple(rules),
                  settings=settings, rule_reports=rule_reports, rule_policies=rule_policies,
                  secrets_resolved=resolving(), watches=watches)


def _duplicate_problems(doc: LineDict, duplicates: list, problems) -> None:
    """Each duplicate key (its first value was kept) as a problem, named by the rule, source or
    target it sits in."""
    if not duplicates:
        return
    owners: dict[int, tuple[str | None, str]] = {}     # id(mapping) -> (rule, message prefix)

    def claim(value, owner):
        if isinstance(value, LineDict):
            owners[id(value)] = owner
        if isinstance(value, (LineDict, LineList)):
            for item in (value.values() if isinstance(value, dict) else value):
                claim(item, owner)

    for section, what in (("sources", "source"), ("targets", "target")):
        if isinstance(doc.get(section), LineDict):
            for name, spec in doc[section].items():
                claim(spec, (None, f"{what} '{name}': "))
    if isinstance(doc.get("rules"), LineList):
        for i, spec in enumerate(doc["rules"]):
            name = spec.get("name") if isinstance(spec, LineDict) else None
            claim(spec, (name if isinstance(name, str) and name else f"#{i + 1}", ""))
    for dup in duplicates:
        rule, prefix = owners.get(id(dup.mapping), (None, ""))
        problems.add(dup.line, prefix + dup.message, rule)
