"""Filter patterns for rules: GitHub Actions' glob cheat sheet for branches, tags and paths.

Input: pattern strings from rules.yaml (`*`, `**`, `?`, `+`, `[]`, leading `!`, `\\` escapes);
output: compiled `Pattern`s and ordered `PatternList`s that answer "is this name or path included?".
"""
from __future__ import annotations

import functools
import re
from typing import Iterable, Sequence

__all__ = ["GlobError", "Pattern", "PatternList", "compile_pattern", "validate_patterns"]

_SPECIAL = frozenset("*?+[\\")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_RANGES = ("az", "AZ", "09")
#: Values longer than this are matched by a linear-time automaton instead of `re`: several
#: `**` in one pattern make the regex backtrack polynomially (a 3 KB path took seconds), and
#: branch names and file paths come from whoever pushes.
LINEAR_ABOVE = 128


class GlobError(ValueError):
    """A pattern (or a list of them) is invalid; the message names the pattern and the fault."""


class Pattern:
    """One compiled pattern. `source` is the text as written (with any `!`); `match` ignores `!`."""

    __slots__ = ("source", "negated", "_literal", "_regex", "_nfa")

    def __init__(self, source: str, negated: bool, literal: str | None, regex: re.Pattern | None,
                 nfa: tuple = ()):
        self.source = source
        self.negated = negated
        self._literal = literal  # set when the pattern has no wildcard: equality beats a regex
        self._regex = regex
        self._nfa = nfa

    def match(self, value: str) -> bool:
        """True when the whole of `value` fits the pattern (negation is PatternList's business)."""
        if self._regex is None:
            return value == self._literal
        if len(value) > LINEAR_ABOVE:
            return _nfa_match(self._nfa, value)
        return self._regex.fullmatch(value) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


def _bad(pattern: str, why: str) -> GlobError:
    return GlobError(f"bad pattern {pattern!r}: {why}")


def _translate(source: str, body: str) -> tuple[str, str | None]:
    """Translate `body` (the pattern without `!`) to a regex; also return it as a plain literal
    when it holds no wildcard, so matching can be a string comparison."""
    out: list[str] = []
    literal: list[str] | None = []
    repeatable = False  # `?` and `+` repeat the preceding character or [class], nothing else
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "*":
            literal = None
            if body.startswith("**/", i) and body[i + 3:i + 4] not in ("?", "+"):
                out.append("(?:.+/)?")  # `**/` may stand for no directory at all: **/README.md
                i += 3
            elif body.startswith("**", i):
                out.append(".*")
                i += 2
            else:
                out.append("[^/]*")
                i += 1
            repeatable = False
        elif c in "?+":
            if not repeatable:
                raise _bad(source, f"{c!r} has no character before it to repeat")
            literal = None
            out.append(c)
            i += 1
            repeatable = False
        elif c == "[":
            literal = None
            close = body.find("]", i + 1)
            if close < 0:
                raise _bad(source, "unclosed '['")
            if close == i + 1:
                raise _bad(source, "empty '[]'")
            out.append(_char_class(source, body[i + 1:close]))
            i = close + 1
            repeatable = True
        else:
            if c == "\\":
                if i + 1 == n:
                    raise _bad(source, "trailing '\\' escapes nothing")
                i += 1
                c = body[i]
            out.append(re.escape(c))
            if literal is not None:
                literal.append(c)
            i += 1
            repeatable = True
    return "".join(out), (None if literal is None else "".join(literal))


def _char_class(source: str, inner: str) -> str:
    out, j = [], 0
    while j < len(inner):
        c = inner[j]
        if j + 2 < len(inner) and inner[j + 1] == "-":
            lo, hi = c, inner[j + 2]
            if not any(a <= lo <= hi <= b for a, b in _RANGES):
                raise _bad(source, f"bad range '{lo}-{hi}' (ranges are a-z, A-Z or 0-9)")
            out.append(f"{lo}-{hi}")
            j += 3
        elif c in _ALNUM:
            out.append(c)
            j += 1
        else:
            raise _bad(source, f"'[...]' holds only letters, digits and ranges, not {c!r}")
    return "[" + "".join(out) + "]"


def _nfa(regex: str) -> tuple:
    """The translated regex as a token list for `_nfa_match`: (kind, predicate, quantifier).

    kinds: "one" (a char or [class], quantifier "", "?" or "+"), "star" ([^/]*), "any" (.*),
    "dirs" ((?:.+/)?). Built from `_translate`'s own output so both matchers agree."""
    tokens = []
    i, n = 0, len(regex)
    while i < n:
        if regex.startswith("(?:.+/)?", i):
            tokens.append(["dirs", None, ""])
            i += 8
        elif regex.startswith(".*", i):
            tokens.append(["any", None, ""])
            i += 2
        elif regex.startswith("[^/]*", i):
            tokens.append(["star", None, ""])
            i += 5
        elif regex[i] in "?+":
            tokens[-1][2] = regex[i]
            i += 1
        elif regex[i] == "[":
            close = regex.index("]", i)
            tokens.append(["one", re.compile(regex[i:close + 1]).fullmatch, ""])
            i = close + 1
        else:
            if regex[i] == "\\":
                i += 1
            tokens.append(["one", regex[i].__eq__, ""])
            i += 1
    return tuple(tuple(t) for t in tokens)


def _nfa_match(tokens: tuple, value: str) -> bool:
    """Whole-string match by simulating all positions at once: O(len(tokens) x len(value))."""
    end = len(tokens)

    def closure(states):
        out, todo = set(states), list(states)
        while todo:
            i, sub = todo.pop()
            if i < end and sub == 0:
                kind, _, q = tokens[i]
                if kind in ("star", "any", "dirs") or q == "?":
                    if (i + 1, 0) not in out:
                        out.add((i + 1, 0))
                        todo.append((i + 1, 0))
        return out

    states = closure({(0, 0)})
    for c in value:
        nxt = set()
        for i, sub in states:
            if i == end:
                continue
            kind, pred, q = tokens[i]
            if kind == "one":
                if pred(c):
                    nxt.add((i + 1, 0))
                    if q == "+":
                        nxt.add((i, 1))   # may repeat; (i, 1) cannot skip without a char
            elif kind == "star":
                if c != "/":
                    nxt.add((i, 0))
            elif kind == "any":
                nxt.add((i, 0))
            else:   # dirs: one or more characters, the last a "/"
                nxt.add((i, 2))
                if sub == 2 and c == "/":
                    nxt.add((i + 1, 0))
        # (i, 1) of a "+" token consumed at least one: it behaves like a fresh start of it
        states = closure({(i, 0) if sub == 1 else (i, sub) for i, sub in nxt})
        if not states:
            return False
    return any(i == end for i, _ in states)


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> Pattern:
    negated = source.startswith("!")
    body = source[1:] if negated else source
    if not body:
        raise _bad(source, "empty pattern after '!'" if negated else "empty pattern")
    regex, literal = _translate(source, body)
    if literal is not None:
        return Pattern(source, negated, literal, None)
    return Pattern(source, negated, None, re.compile(regex, re.DOTALL), _nfa(regex))


def compile_pattern(pattern: str) -> Pattern:
    """Compile one pattern; raise GlobError naming it and its fault."""
    if not isinstance(pattern, str):
        raise _bad(pattern, f"not a string ({type(pattern).__name__})")
    return _compile(pattern)


def _only_negative(sources: Sequence[str]) -> str:
    return (f"patterns {list(sources)!r} are all negative: a '!' pattern only excludes what an "
            "earlier pattern included; add a positive pattern (e.g. '**') or use the -ignore key")


def validate_patterns(patterns) -> list[str]:
    """Every problem with a list of patterns, as messages; an empty list means valid."""
    if isinstance(patterns, (str, bytes)) or not isinstance(patterns, (list, tuple)):
        return [f"expected a list of patterns, got {patterns!r}"]
    problems = []
    for p in patterns:
        try:
            compile_pattern(p)
        except GlobError as exc:
            problems.append(str(exc))
    if patterns and all(isinstance(p, str) and p.startswith("!") for p in patterns):
        problems.append(_only_negative(patterns))
    return problems


def _combined(patterns) -> tuple[frozenset, re.Pattern | None]:
    """The literals of `patterns` as one set and their wildcards as one alternation."""
    literals = frozenset(p._literal for p in patterns if p._regex is None)
    wild = [p._regex.pattern for p in patterns if p._regex is not None]
    return literals, (re.compile("|".join(f"(?:{w})" for w in wild), re.DOTALL) if wild else None)


class PatternList:
    """An ordered list of patterns, evaluated as GitHub does: the last pattern that matches a
    value decides, included if it is positive, excluded if it is `!`. No match: excluded."""

    def __init__(self, patterns: Sequence[str]):
        problems = validate_patterns(patterns)
        if problems:
            raise GlobError("; ".join(problems))
        self._patterns = tuple(compile_pattern(p) for p in patterns)
        self.sources = tuple(p.source for p in self._patterns)
        self.shown = "[" + ", ".join(self.sources) + "]"     # as verdict reasons quote the list
        self._negation = any(p.negated for p in self._patterns)
        # Without `!`, order is irrelevant: literals become one set lookup and every wildcard
        # pattern one alternation, so a rule costs at most one hash and one regex call.
        self._literals, self._wild = _combined([p for p in self._patterns if not p.negated])
        # The common shape with `!`: every positive pattern before every negative one (`['**',
        # '!dependabot/**']`). Then the last match is positive exactly when some positive
        # pattern matches and no negative one does: two combined lookups instead of a walk.
        flags = [p.negated for p in self._patterns]
        self._split = self._negation and flags == sorted(flags)
        self._neg_literals, self._neg_wild = _combined([p for p in self._patterns if p.negated])
        self._reversed = self._patterns[::-1]

    def matches(self, value: str) -> bool:
        """True when `value` is included by the list."""
        if len(value) <= LINEAR_ABOVE and (self._split or not self._negation):
            if not (value in self._literals
                    or (self._wild is not None and self._wild.fullmatch(value) is not None)):
                return False
            return not (value in self._neg_literals
                        or (self._neg_wild is not None and self._neg_wild.fullmatch(value) is not None))
        for p in self._reversed:
            if p.match(value):
                return not p.negated
        return False

    def first_match(self, value: str) -> str | None:
        """The source of the pattern that decides `value` (the last one matching it, which may
        be a `!` pattern that excluded it), or None when no pattern matches."""
        for p in self._reversed:
            if p.match(value):
                return p.source
        return None

    def any_match(self, values: Iterable[str]) -> bool:
        """True when at least one of `values` (e.g. the changed files of a push) is included."""
        return any(self.matches(v) for v in values)

    def __repr__(self) -> str:
        return f"PatternList({list(self.sources)!r})"
