"""Safe YAML loading with line numbers: rules.yaml text -> plain dicts/lists that remember lines.

Input: YAML text. Output: `LineDict` / `LineList` / scalars. Aliases/anchors (billion-laughs),
merge keys and any tag outside YAML's core schema are errors with their line; nothing is ever
constructed from a tag (no `!!python/object`). Duplicate keys are an error too, or, when the
caller passes a list, collected there (the first value kept) so they join every other problem.
"""
from __future__ import annotations

from typing import NamedTuple

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from bridge.errors import BridgeError

_CORE_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
}
MAX_NODES = 1_000_000


class YamlError(BridgeError):
    """YAML text that is malformed or unsafe; `line` (1-based) and `message` name the fault."""

    def __init__(self, line: int, message: str):
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


class Duplicate(NamedTuple):
    """A key met twice in one mapping: its line, the first one's line, and the mapping (first value kept)."""
    line: int
    key: str
    first_line: int
    mapping: "LineDict"

    @property
    def message(self) -> str:
        return f"duplicate key '{self.key}' (first at line {self.first_line})"


class LineDict(dict):
    """A dict that knows its own line and the line of each key."""
    line: int = 0
    key_lines: dict

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when present: 10x faster


class _Loader(_BaseLoader):
    """The safe loader, resolving each distinct plain scalar's tag once per document: a rules file
    repeats its keys and values (`name`, `on`, `repo`, `target: mem` ...) tens of thousands of
    times, and each resolution tries YAML's implicit-type patterns one by one. The tag depends
    only on the scalar's text and how it was quoted (SafeLoader has no path resolvers)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._tags = {}

    def resolve(self, kind, value, implicit):
        if kind is not ScalarNode:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag


def load(text: str, *, duplicates: list | None = None):
    """Parse `text`; raise YamlError(line, message) on anything unsafe or malformed.

    A duplicate key raises too, unless `duplicates` is a list: then each is appended to it as a
    `Duplicate` and the mapping keeps the key's first value."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlError(line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(1, f"invalid YAML: {exc}") from None
    try:
        if node is None:
            return LineDict()
        return _convert(node, loader, set(), duplicates)
    finally:
        loader.dispose()


def _convert(node, loader, seen, duplicates=None):
    line = node.start_mark.line + 1
    # An alias is the anchored node object met a second time: refuse it before expanding anything
    # (a "billion laughs" document is a handful of nodes referenced many times).
    if id(node) in seen:
        raise YamlError(line, "YAML anchors and aliases (&name, *name) are not supported in rules.yaml")
    seen.add(id(node))
    if len(seen) > MAX_NODES:
        raise YamlError(line, f"rules.yaml has more than {MAX_NODES} nodes")
    if isinstance(node, ScalarNode):
        if node.tag not in _CORE_TAGS:
            raise YamlError(line, f"unsupported YAML tag '{node.tag}'")
        return yaml.SafeLoader.construct_scalar(loader, node) if node.tag.endswith(":str") \
            else loader.construct_object(node)
    if isinstance(node, SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise YamlError(line, f"unsupported YAML tag '{node.tag}'")
        out = LineList(_convert(item, loader, seen, duplicates) for item in node.value)
        out.line = line
        out.item_lines = [item.start_mark.line + 1 for item in node.value]
        return out
    if isinstance(node, MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            raise YamlError(line, f"unsupported YAML tag '{node.tag}'")
        out = LineDict()
        out.line = line
        out.key_lines = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError(key_node.start_mark.line + 1, "YAML merge keys (<<) are not supported")
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise YamlError(key_line, "mapping keys must be plain scalars")
            # Keys are names, always strings: YAML 1.1 would turn the key `on:` into True.
            key = key_node.value
            value = _convert(value_node, loader, seen, duplicates)   # checked even when dropped
            if key in out:
                dup = Duplicate(key_line, key, out.key_lines[key], out)
                if duplicates is None:
                    raise YamlError(key_line, dup.message)
                duplicates.append(dup)
                continue
            out[key] = value
            out.key_lines[key] = key_line
        return out
    raise YamlError(line, "unsupported YAML node")  # pragma: no cover
