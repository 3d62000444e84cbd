"""Safe YAML loading with line numbers: rules.yaml text -> plain dicts/lists that remember lines.

Input: YAML text. Output: `LineDict` / `LineList` / scalars. Aliases/anchors (billion-laughs),
merge keys and any tag outside YAML's core schema are errors with their line; nothing is ever
constructed from a tag (no `!!python/object`). Duplicate keys are an error too, or, when the
caller passes a list, collected there (the first value kept) so they join every other problem.
"""
from __future__ import annotations

from typing import NamedTuple

import yaml
from yaml import events
from yaml.nodes import ScalarNode

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
        return _Builder(loader, duplicates).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlError(line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(1, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"


class _Builder:
    """LineDicts and LineLists built straight from the parser's events (libyaml's, when
    present): no node tree, no marks kept. It refuses what the node walk refused, each fault
    at the same line, in document order; a syntax error anywhere still wins over them (the
    rest of the document is parsed before the first fault is raised), as does a second
    document."""

    def __init__(self, loader, duplicates):
        self.loader = loader
        self.duplicates = duplicates
        self.anchors: dict[str, int] = {}     # anchor -> line of the node it names
        self.nodes = 0
        self.fault: YamlError | None = None
        self.scalars: dict = {}               # (tag, text) -> value, for the non-str scalars

    def document(self):
        get = self.loader.get_event
        get()                                              # StreamStart
        if isinstance(self.loader.peek_event(), events.StreamEndEvent):
            return LineDict()
        get()                                              # DocumentStart
        root = self._node()
        get()                                              # DocumentEnd
        if not isinstance(self.loader.peek_event(), events.StreamEndEvent):
            nxt = get()
            raise YamlError(nxt.start_mark.line + 1,
                            "invalid YAML: but found another document")
        if self.fault is not None:
            raise self.fault
        return root

    def _refuse(self, line: int, message: str) -> None:
        """The first fault is kept; the events go on to the end of the document, so that a
        syntax error later in the file is the one reported, as it was before."""
        if self.fault is None:
            self.fault = YamlError(line, message)

    def _node(self):
        """The value of the node whose first event is next, built without recursion (a deeply
        nested document costs memory, not the interpreter's stack)."""
        get = self.loader.get_event
        stack: list = []          # [container, line of each item / pending key, key line]
        while True:
            ev = get()
            cls = type(ev)
            if cls is events.SequenceEndEvent or cls is events.MappingEndEvent:
                value = stack.pop()[0]
                line = value.line
            else:
                line = ev.start_mark.line + 1
                self.nodes += 1
                if self.nodes > MAX_NODES:
                    self._refuse(line, f"rules.yaml has more than {MAX_NODES} nodes")
                frame = stack[-1] if stack else None
                if frame is not None and frame[1] is _KEY:
                    self._key(ev, cls, line, frame)
                    continue
                value = self._start(ev, cls, line)
                if value is _OPENED:
                    stack.append(self._opened)
                    continue
            # `value` is complete: into its parent, or the document's root.
            if not stack:
                return value
            frame = stack[-1]
            container = frame[0]
            if type(container) is LineList:
                container.append(value)
                container.item_lines.append(line)
            else:
                key, key_line = frame[2]
                frame[1] = _KEY
                if key is _SKIP:
                    continue
                if key in container:
                    dup = Duplicate(key_line, key, container.key_lines[key], container)
                    if self.duplicates is None:
                        self._refuse(key_line, dup.message)
                    else:
                        self.duplicates.append(dup)
                    continue
                container[key] = value
                container.key_lines[key] = key_line

    def _anchor(self, anchor, line) -> None:
        if anchor is None:
            return
        if anchor in self.anchors:
            self._refuse(line, "invalid YAML: second occurrence")   # the composer's words
        else:
            self.anchors[anchor] = line

    def _start(self, ev, cls, line):
        """A scalar's value, an alias's fault, or _OPENED with self._opened the new frame."""
        if cls is events.ScalarEvent:
            self._anchor(ev.anchor, line)
            tag = ev.tag
            if tag is None or tag == "!":
                tag = self.loader.resolve(ScalarNode, ev.value, ev.implicit)
            if tag == _STR:
                return ev.value
            if tag not in _CORE_TAGS:
                self._refuse(line, f"unsupported YAML tag '{tag}'")
                return None
            key = (tag, ev.value)
            try:
                return self.scalars[key]
            except KeyError:
                node = ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
                value = self.scalars[key] = self.loader.construct_object(node)
                return value
        if cls is events.AliasEvent:
            # An alias names a node met before: refused before anything is expanded (a
            # "billion laughs" document is a handful of nodes referenced many times), at the
            # line of the node it names.
            if ev.anchor in self.anchors:
                self._refuse(self.anchors[ev.anchor], "YAML anchors and aliases (&name, *name) "
                                                      "are not supported in rules.yaml")
            else:
                self._refuse(line, "invalid YAML: found undefined alias")
            return None
        if cls is events.SequenceStartEvent:
            self._anchor(ev.anchor, line)
            if ev.tag not in (None, "!", _SEQ):
                self._refuse(line, f"unsupported YAML tag '{ev.tag}'")
            out = LineList()
            out.line = line
            out.item_lines = []
            self._opened = [out, None, None]
            return _OPENED
        if cls is events.MappingStartEvent:
            self._anchor(ev.anchor, line)
            if ev.tag not in (None, "!", _MAP):
                self._refuse(line, f"unsupported YAML tag '{ev.tag}'")
            out = LineDict()
            out.line = line
            out.key_lines = {}
            self._opened = [out, _KEY, None]
            return _OPENED
        raise YamlError(line, "unsupported YAML node")  # pragma: no cover

    def _key(self, ev, cls, line, frame) -> None:
        """The key of the mapping `frame`: a scalar's text (keys are names, always strings:
        YAML 1.1 would turn the key `on:` into True). Anything else is refused, and its value
        is built (and checked) but dropped."""
        frame[1] = None
        if cls is events.ScalarEvent:
            self._anchor(ev.anchor, line)
            tag = ev.tag
            if tag is None or tag == "!":
                merge = ev.implicit[0] and ev.value == "<<" and \
                    self.loader.resolve(ScalarNode, ev.value, ev.implicit) == _MERGE
            else:
                merge = tag == _MERGE
            if merge:
                self._refuse(line, "YAML merge keys (<<) are not supported")
                frame[2] = (_SKIP, line)
            else:
                frame[2] = (ev.value, line)
            return
        if cls is events.AliasEvent:
            self._start(ev, cls, line)        # refused as every alias is
        else:
            self._refuse(line, "mapping keys must be plain scalars")
        frame[2] = (_SKIP, line)
        if cls is events.SequenceStartEvent or cls is events.MappingStartEvent:
            self._skip_collection()

    def _skip_collection(self) -> None:
        depth = 1
        while depth:
            cls = type(self.loader.get_event())
            if cls is events.SequenceStartEvent or cls is events.MappingStartEvent:
                depth += 1
            elif cls is events.SequenceEndEvent or cls is events.MappingEndEvent:
                depth -= 1


_KEY = object()      # a mapping's frame waiting for its next key
_SKIP = object()     # a key refused: its value is dropped
_OPENED = object()
