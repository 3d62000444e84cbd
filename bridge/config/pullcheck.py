"""Configuration rules, pull requests: a rule's `on.pull_request`, `on.forks` and `on.comment`
checked, each problem with its line.

Input: one rule's `on:` mapping (a LineDict). Output: problems added to the load's `Problems`;
True when the three keys are valid (then `bridge.pullfilters` compiles them).
"""
from __future__ import annotations

import re

from bridge.config.keys import COMMENT_KEYS, FORKS_KEYS, PULL_KEYS, PUSH_FILTER_KEYS
from bridge.config.problems import as_mapping
from bridge.errors import did_you_mean
from bridge.events import AUTHOR_ASSOCIATIONS, PULL_ACTIONS
from bridge.globs import validate_patterns


def check_pull(on, problems, name, events) -> bool:
    """on.pull_request / forks / comment; and push filters on a rule that takes no pushes."""
    ok = _pull_request(on, problems, name)
    ok = _forks(on, problems, name) and ok
    ok = _comment(on, problems, name) and ok
    takes_pushes = any(kind in events for kind in ("push", "tag", "delete"))
    if not takes_pushes:
        for key in PUSH_FILTER_KEYS:
            if key in on:
                where = "on.pull_request." + key if key in PULL_KEYS else "on.pull_request.branches"
                problems.add(on.line_of(key), f"'on.{key}' filters pushes, and this rule takes no "
                             f"pushes (events [{', '.join(events)}]); for pull requests use {where}", name)
                ok = False
    if "pull_request" in on and "pull_request" not in events:
        problems.add(on.line_of("pull_request"), "'on.pull_request' is set but on.events does not "
                     "list pull_request", name)
        ok = False
    if "comment" in events and "comment" not in on:
        problems.add(on.line_of("events"), "on.events lists comment: say which comments in "
                     "on.comment (pattern: '^/retest\\b', authors: [...])", name)
        ok = False
    return ok


def _pull_request(on, problems, name) -> bool:
    if "pull_request" not in on or on["pull_request"] is None:
        return True
    spec = as_mapping(on["pull_request"], problems, on.line_of("pull_request"), "'on.pull_request'", name)
    if spec is None:
        return False
    ok = True
    problems.unknown_keys(spec, PULL_KEYS, "'on.pull_request'", name)
    ok = not any(k not in PULL_KEYS for k in spec)
    for a, b in (("branches", "branches-ignore"), ("paths", "paths-ignore")):
        if a in spec and b in spec:
            problems.add(spec.line_of(b), f"'pull_request.{a}' and 'pull_request.{b}' cannot both be "
                                          f"set (use '!' patterns in '{a}')", name)
            ok = False
    for key in ("branches", "branches-ignore", "paths", "paths-ignore"):
        if key in spec:
            ok = _patterns(spec, key, f"on.pull_request.{key}", problems, name) and ok
    if "types" in spec:
        types = spec["types"]
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            problems.add(spec.line_of("types"), "'on.pull_request.types' must list actions, such as "
                                                "[opened, synchronize, reopened]", name)
            return False
        for t in types:
            if t not in PULL_ACTIONS:
                problems.add(spec.line_of("types"), f"unknown pull request action '{t}'"
                             + did_you_mean(t, PULL_ACTIONS) + f"; known: {', '.join(PULL_ACTIONS)}", name)
                ok = False
    return ok


def _patterns(spec, key, where, problems, name) -> bool:
    value = spec[key]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        problems.add(spec.line_of(key), f"'{where}' must be a pattern or a list of patterns", name)
        return False
    messages = validate_patterns(values)
    for msg in messages:
        problems.add(spec.line_of(key), f"{where}: {msg}", name)
    return not messages


def _authors(spec, where, problems, name) -> bool:
    authors = spec["authors"]
    authors = [authors] if isinstance(authors, str) else authors
    if not isinstance(authors, list) or not authors or not all(isinstance(a, str) and a for a in authors):
        problems.add(spec.line_of("authors"), f"'{where}' must list author associations "
                     f"({', '.join(AUTHOR_ASSOCIATIONS[:3])}, ...) or user names", name)
        return False
    for a in authors:
        if a.isupper() and a not in AUTHOR_ASSOCIATIONS:
            problems.add(spec.line_of("authors"), f"unknown author association '{a}' in {where}"
                         + did_you_mean(a, AUTHOR_ASSOCIATIONS)
                         + f"; known: {', '.join(AUTHOR_ASSOCIATIONS)} (or a user name)", name)
            return False
    return True


def _forks(on, problems, name) -> bool:
    if "forks" not in on:
        return True
    forks = on["forks"]
    if forks in ("skip", "run"):
        return True
    if isinstance(forks, dict):
        spec = as_mapping(forks, problems, on.line_of("forks"), "'on.forks'", name)
        if spec is None:
            return False
        problems.unknown_keys(spec, FORKS_KEYS, "'on.forks'", name)
        if "authors" not in spec or any(k not in FORKS_KEYS for k in spec):
            if "authors" not in spec:
                problems.add(spec.line or on.line_of("forks"), "'on.forks' needs authors: [...]", name)
            return False
        return _authors(spec, "on.forks.authors", problems, name)
    problems.add(on.line_of("forks"), "'on.forks' must be skip (the default), run, or "
                                      "{authors: [OWNER, MEMBER, COLLABORATOR]}", name)
    return False


def _comment(on, problems, name) -> bool:
    if "comment" not in on:
        return True
    spec = on["comment"]
    if isinstance(spec, str):
        pattern, spec = spec, None
    else:
        spec = as_mapping(spec, problems, on.line_of("comment"), "'on.comment'", name)
        if spec is None:
            return False
        problems.unknown_keys(spec, COMMENT_KEYS, "'on.comment'", name)
        if any(k not in COMMENT_KEYS for k in spec):
            return False
        pattern = spec.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        problems.add(on.line_of("comment"), "'on.comment.pattern' must be a regular expression, "
                                            "such as '^/retest\\b'", name)
        return False
    try:
        re.compile(pattern)
    except re.error as exc:
        problems.add(on.line_of("comment"), f"on.comment.pattern is not a regular expression: {exc}", name)
        return False
    if spec is not None and "authors" in spec:
        return _authors(spec, "on.comment.authors", problems, name)
    return True
