"""Configuration rules: rules.yaml's `rules:` list checked against the sources and targets, and
compiled.

Input: the parsed document, the checked sources and targets. Output: compiled `Rule`s and each
rule's `RuleReport`, each problem added to the load's `Problems` under the rule's name.
"""
from __future__ import annotations

import re

from bridge.config.keys import ON_KEYS, RULE_KEYS
from bridge.config.model import RuleReport
from bridge.config.policy import rule_policy
from bridge.config.problems import as_mapping, line_of_key
from bridge.config.pullcheck import check_pull
from bridge.config.yamlload import LineDict, LineList
from bridge.errors import did_you_mean
from bridge.events import KINDS
from bridge.globs import validate_patterns
from bridge.rules import DEFAULT_EVENTS, Rule, compile_rule
from bridge.targets import target_spec
from bridge.templates import commit_templates, template_problems, templates_in

_CONTROL = re.compile(r"[\x00-\x1f]")


def parse_rules(doc, problems, sources, targets, rule_reports, broken_targets=frozenset(),
                rule_policies=None) -> list[Rule]:
    raw = doc.get("rules")
    rule_policies = {} if rule_policies is None else rule_policies
    if raw is None:
        return []
    if not isinstance(raw, LineList):
        problems.add(doc.line_of("rules"), "rules must be a list")
        return []
    seen: dict[str, int] = {}
    compiled = []
    for i, spec in enumerate(raw):
        line = raw.line_of(i)
        if not isinstance(spec, LineDict):
            problems.add(line, f"rule #{i + 1} must be a mapping with name, on and run")
            continue
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            problems.add(line, f"rule #{i + 1} has no 'name'")
            name = f"#{i + 1}"
        elif name in seen:
            problems.add(spec.line_of("name"), f"duplicate rule name (first at line {seen[name]})", name)
        else:
            seen[name] = spec.line_of("name")
        rule = _rule(spec, name, line, problems, sources, targets, rule_reports, broken_targets,
                     rule_policies)
        if rule is not None:
            compiled.append(rule)
    return compiled


def _rule(spec, name, line, problems, sources, targets, rule_reports, broken_targets,
          rule_policies) -> Rule | None:
    """One rule's mapping checked (its problems added), compiled if it has none."""
    problems.unknown_keys(spec, RULE_KEYS, "the rule", name)
    rule_reports[name] = _rule_report(spec, name, problems)
    if "policy" in spec:
        rule_policies[name] = rule_policy(spec, problems, name)
    on = as_mapping(spec.get("on"), problems, spec.line_of("on"), "'on'", name)
    run = as_mapping(spec.get("run"), problems, spec.line_of("run"), "'run'", name)
    if "on" not in spec:
        problems.add(line, "'on' is required", name)
    if "run" not in spec:
        problems.add(line, "'run' is required", name)
    if on is None or run is None:
        return None
    ok = _check_on(on, problems, name, sources)
    target_name = run.get("target")
    target = targets.get(target_name) if isinstance(target_name, str) else None
    if target is None:
        if not isinstance(target_name, str):
            problems.add(run.line_of("target"), "'run.target' must name a target under 'targets:'"
                         + (f" ({', '.join(targets)})" if targets else ""), name)
        elif target_name not in broken_targets:
            problems.add(run.line_of("target"),
                         f"unknown target '{target_name}'" + did_you_mean(target_name, targets), name)
        ok = False
    elif not _check_run(run, target, problems, name):
        ok = False
    literal = target_spec(target.kind).literal_keys if target is not None else ()
    for tline, msg in template_problems(_without(run, literal)):
        problems.add(tline, msg, name)
        ok = False
    if not _check_empty_sha(spec, on, run, problems, name):
        ok = False
    policy = spec.get("on_unknown_files", "run")
    if policy not in ("run", "skip"):
        problems.add(spec.line_of("on_unknown_files"),
                     f"on_unknown_files must be 'run' or 'skip', not '{policy}'", name)
        ok = False
    if not ok:
        return None
    group = rule_policies.get(name, {}).get("group") or target.policy.group
    return compile_rule(name, spec.line_of("name"), on, run, kind=target.kind, on_unknown_files=policy,
                        group=group)


def _check_run(run: LineDict, target, problems, name) -> bool:
    """A rule's `run:` against its target's kind: its keys, the kind's own checks, and no
    template where the kind takes a value literally. False if any problem was added."""
    ok = True
    cls = target_spec(target.kind)
    allowed = dict(cls.run_keys)
    allowed.setdefault("target", True)
    problems.unknown_keys(run, allowed, f"'run' (target kind {target.kind})", name)
    for key, required in allowed.items():
        if required and key not in run:
            problems.add(run.line, f"'run.{key}' is required for target kind {target.kind}", name)
            ok = False
    for msg in cls.validate_run(run):
        problems.add(line_of_key(run, msg, run.line), msg, name)
        ok = False
    for tline, msg in literal_problems(run, cls):
        problems.add(tline, msg, name)
        ok = False
    return ok


def literal_problems(run: LineDict, cls, skip=()) -> list[tuple[int, str]]:
    """A problem, with its line, for each template in a key the target takes literally (an
    exec command's argv and cwd), in a rule's `run:` or the target's own options (never
    rendered there either): payload values reach a command only through its environment.
    `skip`: the target's secret references, which are not templates."""
    out = []
    for key in cls.literal_keys:
        value = run.get(key)
        if value in skip:
            continue
        for index, template in templates_in(value):
            line = value.line_of(index) if isinstance(value, LineList) else run.line_of(key)
            out.append((line, cls.literal_message(key, template)))
    return out


def _without(run: LineDict, keys) -> LineDict:
    """`run` without `keys` (checked on their own), keeping the lines of the others."""
    if not any(k in run for k in keys):
        return run
    out = LineDict({k: v for k, v in run.items() if k not in keys})
    out.line, out.key_lines = run.line, run.key_lines
    return out


def _check_empty_sha(spec, on, run, problems, name) -> bool:
    """A deletion has no commit: `${sha}`/`${short_sha}` are empty then. A rule that runs on
    deletions (on.events lists delete) may use them only with `allow_empty_sha: true`."""
    allowed = spec.get("allow_empty_sha", False)
    if not isinstance(allowed, bool):
        problems.add(spec.line_of("allow_empty_sha"), "allow_empty_sha must be true or false", name)
        return False
    events = on.get("events", DEFAULT_EVENTS)
    events = [events] if isinstance(events, str) else events
    if allowed or not isinstance(events, (list, tuple)) or "delete" not in events:
        return True
    uses = commit_templates(run)
    for line, field_name in uses:
        problems.add(line, f"'${{{field_name}}}' is empty when a branch or tag is deleted, and this "
                           f"rule runs on deletions (on.events at line {on.line_of('events')} lists "
                           "delete). Fix: use '${before}' (the commit the deleted ref pointed to), "
                           "or take delete out of on.events (a separate rule for deletions), or "
                           "set 'allow_empty_sha: true' on the rule to pass an empty value", name)
    return not uses


def _rule_report(spec, name, problems) -> RuleReport:
    """`context:` (default bridge/<name>), `report:` and `report_skipped:` of one rule."""
    context = spec.get("context", f"bridge/{name}")
    if not isinstance(context, str) or not context.strip() or len(context) > 255 \
            or _CONTROL.search(context):
        problems.add(spec.line_of("context"), "context must be a one-line name of at most 255 "
                                              f"characters, such as 'ci/{name}'", name)
        context = f"bridge/{name}"
    flags = {}
    for key in ("report", "report_skipped"):
        value = spec.get(key, key == "report")
        if not isinstance(value, bool):
            problems.add(spec.line_of(key), f"{key} must be true or false", name)
            value = key == "report"
        flags[key] = value
    if flags["report_skipped"] and not flags["report"]:
        problems.add(spec.line_of("report_skipped"), "report_skipped: true needs report: true "
                                                     "(report: false posts no status at all)", name)
    return RuleReport(context=context, **flags)


def _check_on(on: LineDict, problems, name, sources) -> bool:
    ok = True
    problems.unknown_keys(on, ON_KEYS, "'on'", name)
    for a, b in (("branches", "branches-ignore"), ("tags", "tags-ignore"), ("paths", "paths-ignore")):
        if a in on and b in on:
            problems.add(on.line_of(b), f"'{a}' and '{b}' cannot both be set (GitHub forbids it too: "
                                        f"use '!' patterns in '{a}')", name)
            ok = False
    for key in ("repo", "branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore",
                "source"):
        if key not in on:
            continue
        value = on[key]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            problems.add(on.line_of(key), f"'on.{key}' must be a pattern or a list of patterns "
                                          "(quote names like 'on', 'yes' or numbers)", name)
            ok = False
            continue
        for msg in validate_patterns(values):
            problems.add(on.line_of(key), f"on.{key}: {msg}", name)
            ok = False
        if key == "source":
            for v in values:
                if v not in sources and not any(c in v for c in "*?[!"):
                    problems.add(on.line_of(key), f"on.source: unknown source '{v}'", name)
                    ok = False
    if "events" in on:
        events = on["events"]
        events = [events] if isinstance(events, str) else events
        if not isinstance(events, list) or not events:
            problems.add(on.line_of("events"), "'on.events' must list push, tag, delete, pull_request and/or comment", name)
            ok = False
        else:
            for ev in events:
                if ev not in KINDS:
                    problems.add(on.line_of("events"), f"unknown event '{ev}' in on.events"
                                 + did_you_mean(ev, KINDS) + f"; known: {', '.join(KINDS)}", name)
                    ok = False
    if ok:
        events = on.get("events") or [k for k in ("pull_request", "comment") if k in on] or DEFAULT_EVENTS
        ok = check_pull(on, problems, name, [events] if isinstance(events, str) else list(events))
    return ok
