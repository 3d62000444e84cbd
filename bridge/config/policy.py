"""Configuration of `policy:`: a target's (how much it may take) and a rule's (overriding keys of
its target's for that rule's jobs), checked into `TargetPolicy` values.

Input: the parsed `policy:` mapping with its lines. Output: a `TargetPolicy` (targets) or the
dict of keys a rule overrides, each problem added to the load's `Problems` with its line.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from bridge.config.keys import BREAKER_KEYS, POLICY_KEYS, RULE_POLICY_KEYS
from bridge.config.problems import as_mapping
from bridge.errors import InvalidValue, did_you_mean
from bridge.events import TEMPLATE_FIELDS
from bridge.policies import (NO_POLICY, ON_NEWER, Breaker, TargetPolicy, parse_duration,
                             parse_rate)
from bridge.templates import templates_in

#: Fields a group template may name: the event's, and the rule's name.
GROUP_FIELDS = TEMPLATE_FIELDS | {"rule"}


def target_policy(spec, problems, where: str) -> TargetPolicy:
    """A target's `policy:` over the defaults (no limits)."""
    values = _policy(spec, problems, where, POLICY_KEYS, None)
    return replace(NO_POLICY, **values)


def rule_policy(spec, problems, name: str) -> dict[str, Any]:
    """The keys a rule's `policy:` overrides (a breaker is the target's alone)."""
    return _policy(spec, problems, "the rule's policy", RULE_POLICY_KEYS, name)


def _policy(spec, problems, where: str, allowed, rule) -> dict[str, Any]:
    raw = as_mapping(spec["policy"], problems, spec.line_of("policy"), f"{where} policy", rule)
    if raw is None:
        return {}
    label = where if rule is not None else f"{where} policy"
    problems.unknown_keys(raw, allowed, label, rule)
    values: dict[str, Any] = {}
    for key in allowed:
        if key not in raw:
            continue
        try:
            values[key] = _value(key, raw[key], raw, problems, label, rule)
        except InvalidValue as exc:
            problems.add(raw.line_of(key), f"policy.{key}: {exc}", rule)
            values.pop(key, None)
    if values.get("breaker", True) is None:
        del values["breaker"]
    return values


def _value(key: str, value, raw, problems, label: str, rule):
    if key in ("max_running", "max_running_per_group"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidValue(f"must be a positive integer, not {value!r}")
        return value
    if key == "rate":
        return parse_rate(value)
    if key == "debounce":
        return parse_duration(value)
    if key == "on_newer":
        if value not in ON_NEWER:
            raise InvalidValue(f"must be one of {', '.join(ON_NEWER)}, not {value!r}"
                             + did_you_mean(str(value), ON_NEWER))
        return value
    if key == "group":
        return _group(value)
    return _breaker(raw, problems, label, rule)


def _group(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("must be a template such as '${repo}/${ref}'")
    for _, template in templates_in(value):
        name = template[2:-1] if template.startswith("${") and template.endswith("}") else None
        if name is None:
            raise InvalidValue(f"template {template!r} has no closing '}}'")
        if name not in GROUP_FIELDS:
            raise InvalidValue(f"template '${{{name}}}' names an unknown field"
                             + did_you_mean(name, sorted(GROUP_FIELDS), "'${{{}}}'")
                             + f"; fields: {', '.join(sorted(GROUP_FIELDS))}")
    return value


def _breaker(raw, problems, label: str, rule) -> Breaker | None:
    spec = as_mapping(raw["breaker"], problems, raw.line_of("breaker"), "policy.breaker", rule)
    if spec is None:
        return None
    problems.unknown_keys(spec, BREAKER_KEYS, f"{label}.breaker", rule)
    values: dict[str, Any] = {}
    if "failures" in spec:
        n = spec["failures"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            problems.add(spec.line_of("failures"), "policy.breaker.failures must be a positive "
                                                   f"integer, not {n!r}", rule)
        else:
            values["failures"] = n
    if "open_for" in spec:
        try:
            values["open_for"] = parse_duration(spec["open_for"])
        except InvalidValue as exc:
            problems.add(spec.line_of("open_for"), f"policy.breaker.open_for: {exc}", rule)
    return Breaker(**values)
