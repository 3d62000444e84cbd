"""Templates of `run:`: `${field}` placeholders (`$$` a literal `$`) checked against the event's
fields, precompiled once per rule and rendered per event. Input: a rule's `run:` (strings, lists,
mappings) and the event's template fields. Output: the rendered plain copy, or the problems found."""
from __future__ import annotations

import re

from bridge.errors import did_you_mean
from bridge.events import COMMIT_FIELDS, TEMPLATE_FIELDS

_TEMPLATE = re.compile(r"\$\$|\$\{([^}]*)\}")
_TEMPLATE_CHECK = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")    # the last: a `${` never closed


def compile_template(value):
    """Precompile `run:` once: a callable fields -> rendered copy (None when `value` holds no
    template), constants shared, not re-walked. The callables are plain objects (they travel,
    pickled, from `cibridge serve` to its children: service/handover.py), and a string's is
    shared by every rule that has that string (`${sha}` in ten thousand rules: one object)."""
    if isinstance(value, str):
        return _compile_string(value) if "$" in value else None
    if isinstance(value, dict):
        compiled = {k: compile_template(v) for k, v in value.items()}
        if all(c is None for c in compiled.values()):
            return None
        return _Mapping(tuple((k, value[k], c) for k, c in compiled.items()))
    if isinstance(value, list):
        compiled = [compile_template(v) for v in value]
        if all(c is None for c in compiled):
            return None
        return _Sequence(tuple(zip(value, compiled)))
    return None


_STRINGS: dict = {}     # template text -> its compiled form (immutable, so shared)


def _compile_string(value: str):
    compiled = _STRINGS.get(value)
    if compiled is not None:
        return compiled
    parts = []
    pos = 0
    for m in _TEMPLATE.finditer(value):
        parts.append(value[pos:m.start()])
        parts.append("$" if m.group(0) == "$$" else (m.group(1),))
        pos = m.end()
    parts.append(value[pos:])
    parts = [p for p in parts if p != ""]
    if len(parts) == 1 and not isinstance(parts[0], str):
        compiled = _Field(parts[0][0])
    else:
        compiled = _Join(tuple(parts))
    if len(_STRINGS) < 65536:
        _STRINGS[value] = compiled
    return compiled


def forget_shared() -> None:
    """Drop the compiled strings shared so far (globs.forget_shared's twin)."""
    _STRINGS.clear()


class _Field:
    """`${name}` alone: the field's value."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __call__(self, fields):
        return fields[self.name]

    def __reduce__(self):
        return _Field, (self.name,)


class _Join:
    """Text with `${name}`s in it: literal parts (str) and fields ((name,)) joined."""
    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = parts

    def __call__(self, fields):
        return "".join([p if isinstance(p, str) else fields[p[0]] for p in self.parts])

    def __reduce__(self):
        return _Join, (self.parts,)


class _Mapping:
    """A mapping: (key, value, compiled value or None) per item."""
    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items

    def __call__(self, fields):
        return {k: (c(fields) if c is not None else copy_plain(v)) for k, v, c in self.items}

    def __reduce__(self):
        return _Mapping, (self.items,)


class _Sequence:
    """A list: (value, compiled value or None) per item."""
    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items

    def __call__(self, fields):
        return [c(fields) if c is not None else copy_plain(v) for v, c in self.items]

    def __reduce__(self):
        return _Sequence, (self.items,)


def copy_plain(value):
    """A deep copy as plain dict/list (from LineDict/LineList too): stored requests are ordinary
    JSON, and a rendered request never shares its lists with the rule's."""
    if isinstance(value, dict):
        return {k: copy_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_plain(v) for v in value]
    return value


def _templates(run):
    """(line, string, match) for every `$$`, `${...}` and unclosed `${` in the strings of `run:`."""
    def walk(value, line):
        if isinstance(value, str):
            for m in _TEMPLATE_CHECK.finditer(value):
                yield line, value, m
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, value.line_of(k) if hasattr(value, "line_of") else line)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, value.line_of(i) if hasattr(value, "line_of") else line)

    return walk(run, getattr(run, "line", 0))


def commit_templates(run) -> list[tuple[int, str]]:
    """(line, field) of every `${sha}` / `${short_sha}` in `run:`: empty when a ref is deleted."""
    return [(line, m.group(1)) for line, _, m in _templates(run) if m.group(1) in COMMIT_FIELDS]


def template_problems(run) -> list[tuple[int, str]]:
    """Every `${...}` in `run:` that names no event field, and every `${` never closed, with its line."""
    out = []
    for line, value, m in _templates(run):
        name = m.group(1)
        if m.group(0) == "${":
            out.append((line, f"template {value[m.start():m.start() + 40]!r} has no closing "
                              "'}' (write $${ for a literal '${')"))
            continue
        if name is None or name in TEMPLATE_FIELDS:
            continue
        if ":" in name and name.split(":", 1)[0] in ("env", "file", "credential"):
            out.append((line, f"secret references like '${{{name}}}' are not allowed in "
                              "'run:' (they would be stored with the job); give the target "
                              "the secret instead"))
            continue
        msg = (f"template '${{{name}}}' names an unknown field"
               + did_you_mean(name, sorted(TEMPLATE_FIELDS), "'${{{}}}'")
               + f"; fields: {', '.join(sorted(TEMPLATE_FIELDS))}")
        out.append((line, msg))
    return out


def templates_in(value) -> list[tuple[int | None, str]]:
    """Every `${...}` (and unclosed `${`) in `value`, a string or a list of strings, as
    (list index or None, template); `$$` is a literal `$`, not a template."""
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    out = []
    for index, text in items:
        if not isinstance(text, str):
            continue
        for m in _TEMPLATE_CHECK.finditer(text):
            if m.group(0) != "$$":
                out.append((index, m.group(0) if m.group(1) is not None
                            else text[m.start():m.start() + 40]))
    return out


def render(value, fields: dict):
    """Substitute `${field}` in every string of `value`; `$$` is a literal `$`. No code, no attributes."""
    if isinstance(value, str):
        if "$" not in value:
            return value
        return _TEMPLATE.sub(lambda m: "$" if m.group(0) == "$$" else fields[m.group(1)], value)
    if isinstance(value, dict):
        return {k: render(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, fields) for v in value]
    return value
