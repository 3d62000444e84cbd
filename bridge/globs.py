"""Filter patterns for rules: GitHub Actions' glob cheat sheet for branches, tags and paths.

Input: pattern strings from rules.yaml (`*`, `**`, `?`, `+`, `[]`, leading `!`, `\\` escapes);
output: compiled `Pattern`s and ordered `PatternList`s that answer "is this name or path included?".
Matching never backtracks: a list compiles to one automaton that reads each character once.
"""
from __future__ import annotations

import functools
from typing import Iterable, Sequence

from bridge.errors import BridgeError

__all__ = ["GlobError", "Pattern", "PatternList", "compile_pattern", "validate_patterns"]

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_RANGES = ("az", "AZ", "09")
_ANY = "any"            # a move on every character
_NOT_SLASH = "not/"     # a move on every character but "/"
_SLASH = frozenset("/")
#: Bounds on one automaton's cache of states and moves; past them it starts afresh (RE2 does the
#: same), so a stream of odd values costs time per character, never unbounded memory.
MAX_STATES = 2000
MAX_MOVES = 10_000


class GlobError(BridgeError, ValueError):
    """A pattern (or a list of them) is invalid; the message names the pattern and the fault.
    Also a ValueError, as it always was (a bad --repo/--rule glob is a bad value)."""


def _bad(pattern, why: str) -> GlobError:
    return GlobError(f"bad pattern {pattern!r}: {why}")


def _tokens(source: str, body: str) -> tuple[tuple, str | None]:
    """`body` (the pattern without `!`) as tokens: ("one", chars, "" | "?" | "+"), ("star",)
    for `*` (no "/"), ("any",) for `**`, ("dirs",) for a `**/` that may stand for no directory
    at all (`**/README.md`). Also the body as a plain literal when it holds no wildcard."""
    out: list[tuple] = []
    literal: list[str] | None = []
    repeatable = False  # `?` and `+` repeat the preceding character or [class], nothing else
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "*":
            literal = None
            if body.startswith("**/", i) and body[i + 3:i + 4] not in ("?", "+"):
                out.append(("dirs",))   # its "/" included
                i += 3
            elif body.startswith("**", i):
                out.append(("any",))
                i += 2
            else:
                out.append(("star",))
                i += 1
            repeatable = False
        elif c in "?+":
            if not repeatable:
                raise _bad(source, f"{c!r} has no character before it to repeat")
            literal = None
            out[-1] = ("one", out[-1][1], c)
            i += 1
            repeatable = False
        elif c == "[":
            literal = None
            close = body.find("]", i + 1)
            if close < 0:
                raise _bad(source, "unclosed '['")
            if close == i + 1:
                raise _bad(source, "empty '[]'")
            out.append(("one", _char_class(source, body[i + 1:close]), ""))
            i = close + 1
            repeatable = True
        else:
            if c == "\\":
                if i + 1 == n:
                    raise _bad(source, "trailing '\\' escapes nothing")
                i += 1
                c = body[i]
            out.append(("one", frozenset(c), ""))
            if literal is not None:
                literal.append(c)
            i += 1
            repeatable = True
    return tuple(out), (None if literal is None else "".join(literal))


def _char_class(source: str, inner: str) -> frozenset:
    out: set[str] = set()
    j = 0
    while j < len(inner):
        c = inner[j]
        if j + 2 < len(inner) and inner[j + 1] == "-":
            lo, hi = c, inner[j + 2]
            if not any(a <= lo <= hi <= b for a, b in _RANGES):
                raise _bad(source, f"bad range '{lo}-{hi}' (ranges are a-z, A-Z or 0-9)")
            out.update(chr(k) for k in range(ord(lo), ord(hi) + 1))
            j += 3
        elif c in _ALNUM:
            out.add(c)
            j += 1
        else:
            raise _bad(source, f"'[...]' holds only letters, digits and ranges, not {c!r}")
    return frozenset(out)


class _NFA:
    """The patterns' tokens as one nondeterministic automaton. Node k has `moves[k]` (a test:
    a frozenset of characters, _ANY or _NOT_SLASH, and the next node), `closure[k]` (the nodes
    reachable without reading), `owner[k]` (the pattern's index) and `accepts[k]`."""

    def __init__(self, token_lists: Sequence[tuple]):
        self.moves: list[list] = []
        self.eps: list[list[int]] = []
        self.owner: list[int] = []
        self.accepts: list[bool] = []
        self.universal: list[bool] = []   # every continuation, "" included, is accepted
        self.starts = [self._pattern(index, tokens) for index, tokens in enumerate(token_lists)]
        self.closure = [self._close(k) for k in range(len(self.moves))]

    def _node(self, owner: int) -> int:
        self.moves.append([])
        self.eps.append([])
        self.owner.append(owner)
        self.accepts.append(False)
        self.universal.append(False)
        return len(self.moves) - 1

    def _pattern(self, owner: int, tokens: tuple) -> int:
        start = cur = self._node(owner)
        for i, token in enumerate(tokens):
            nxt = self._node(owner)
            kind = token[0]
            if kind == "one":
                _, chars, q = token
                if q == "+":
                    loop = self._node(owner)
                    self.moves[cur].append((chars, loop))
                    self.moves[loop].append((chars, loop))
                    self.eps[loop].append(nxt)
                else:
                    self.moves[cur].append((chars, nxt))
                    if q == "?":
                        self.eps[cur].append(nxt)
            elif kind == "dirs":             # empty, or one or more characters ending in "/"
                inner = self._node(owner)
                self.eps[cur].append(nxt)
                self.moves[cur].append((_ANY, inner))
                self.moves[inner] += [(_ANY, inner), (_SLASH, nxt)]
            else:                            # star / any: a loop on itself
                loop = self._node(owner)
                self.eps[cur].append(loop)
                self.moves[loop].append((_NOT_SLASH if kind == "star" else _ANY, loop))
                self.eps[loop].append(nxt)
                self.universal[loop] = kind == "any" and all(_nullable(t) for t in tokens[i + 1:])
            cur = nxt
        self.accepts[cur] = True
        return start

    def _close(self, k: int) -> frozenset:
        seen, todo = {k}, [k]
        while todo:
            for j in self.eps[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return frozenset(seen)


def _nullable(token: tuple) -> bool:
    return token[0] != "one" or token[2] == "?"


class _State(dict):
    """A set of NFA nodes, as a dict of the moves already taken from it (character -> _State).

    `decision`: the index of the last pattern that accepts here, or -1. `fixed`: the decision
    for every longer value (None while more characters can change it); a fixed state has no
    moves, so the reading loop stops on it."""
    __slots__ = ("nodes", "decision", "fixed")


class _Automaton:
    """A lazily built DFA over one or more patterns: the answer for a value is the index of the
    LAST pattern that matches all of it (-1 for none). Time O(len(value)) per value once its
    states are built, O(len(value) x nodes) at worst; never backtracks."""

    def __init__(self, token_lists: Sequence[tuple]):
        self._nfa = _NFA(token_lists)
        self._reset()

    def _reset(self) -> None:
        self._states: dict[frozenset, _State] = {}
        self._moves = 0
        self._start = self._state(frozenset().union(*(self._nfa.closure[s] for s in self._nfa.starts)))

    def _state(self, nodes: frozenset) -> _State:
        state = self._states.get(nodes)
        if state is not None:
            return state
        if len(self._states) >= MAX_STATES:
            self._reset()
        nfa = self._nfa
        state = _State()
        state.nodes = nodes
        state.decision = max((nfa.owner[k] for k in nodes if nfa.accepts[k]), default=-1)
        live = max((nfa.owner[k] for k in nodes if nfa.moves[k]), default=-1)
        sure = max((nfa.owner[k] for k in nodes if nfa.universal[k]), default=-1)
        # Nothing can match a longer value, or the last live pattern matches every one of them.
        state.fixed = -1 if live < 0 else (sure if sure == live else None)
        self._states[nodes] = state
        return state

    def _step(self, state: _State, c: str) -> _State:
        nfa = self._nfa
        nxt: set[int] = set()
        for k in state.nodes:
            for test, target in nfa.moves[k]:
                if test is _ANY or (c != "/" if test is _NOT_SLASH else c in test):
                    nxt |= nfa.closure[target]
        if self._moves >= MAX_MOVES:
            self._reset()
        new = self._state(frozenset(nxt))
        state[c] = new
        self._moves += 1
        return new

    def run(self, value: str) -> int:
        state = self._start
        for c in value:
            nxt = state.get(c)
            if nxt is None:
                if state.fixed is not None:
                    return state.fixed
                nxt = self._step(state, c)
            state = nxt
        return state.decision


class Pattern:
    """One compiled pattern. `source` is the text as written (with any `!`); `match` ignores `!`."""

    __slots__ = ("source", "negated", "_literal", "_tokens", "_automaton")

    def __init__(self, source: str, negated: bool, literal: str | None, tokens: tuple):
        self.source = source
        self.negated = negated
        self._literal = literal  # set when the pattern has no wildcard: equality is the match
        self._tokens = tokens
        self._automaton = None   # built on first use: most patterns are only used in lists

    def match(self, value: str) -> bool:
        """True when the whole of `value` fits the pattern (negation is PatternList's business)."""
        if self._literal is not None:
            return value == self._literal
        if self._automaton is None:
            self._automaton = _automaton((self.source,))
        return self._automaton.run(value) == 0

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


@functools.lru_cache(maxsize=4096)
def _automaton(sources: tuple[str, ...]) -> _Automaton:
    """One automaton per distinct list of patterns, shared by every rule that has that list
    (`[main]`, `['**', '!dependabot/**']`): its states are built once for all of them."""
    return _Automaton([_compile(source)._tokens for source in sources])


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> Pattern:
    negated = source.startswith("!")
    body = source[1:] if negated else source
    if not body:
        raise _bad(source, "empty pattern after '!'" if negated else "empty pattern")
    tokens, literal = _tokens(source, body)
    return Pattern(source, negated, literal, tokens)


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
    if not all(type(p) is str for p in patterns):
        return _validate(patterns)
    key = tuple(patterns)
    return list(_VALID[key]) if key in _VALID else _validate(key)


_VALID: dict = {}      # patterns -> their problems: ten thousand rules repeat a few lists


def _validate(patterns) -> list[str]:
    problems = []
    for p in patterns:
        try:
            compile_pattern(p)
        except GlobError as exc:
            problems.append(str(exc))
    if patterns and all(isinstance(p, str) and p.startswith("!") for p in patterns):
        problems.append(_only_negative(patterns))
    if isinstance(patterns, tuple) and len(_VALID) < 65536:
        _VALID[patterns] = tuple(problems)
    return problems


class PatternList:
    """An ordered list of patterns, evaluated as GitHub does: the last pattern that matches a
    value decides, included if it is positive, excluded if it is `!`. No match: excluded.

    The whole list is one automaton that reads the value once, left to right, and knows at the
    end (or as soon as no later character can change it) which pattern matched last."""

    def __init__(self, patterns: Sequence[str]):
        problems = validate_patterns(patterns)
        if problems:
            raise GlobError("; ".join(problems))
        self._patterns = tuple(compile_pattern(p) for p in patterns)
        self.sources = tuple(p.source for p in self._patterns)
        self.shown = "[" + ", ".join(self.sources) + "]"     # as verdict reasons quote the list
        # Plain names only and no `!` (`[main, develop]`): a set lookup is the whole answer.
        self._literals = None
        if all(p._literal is not None and not p.negated for p in self._patterns):
            self._literals = frozenset(p._literal for p in self._patterns)
        # The answer for each deciding pattern, and for none (-1, the last entry).
        self._included = tuple(not p.negated for p in self._patterns) + (False,)

    @property
    def _run(self):
        # Built on first use: a list of plain names answers `matches` without it (and a
        # thousand rules' `repo: org/name` lists need none until `first_match` is asked).
        run = self.__dict__.get("_automaton_run")
        if run is None:
            run = self.__dict__["_automaton_run"] = _automaton(self.sources).run
        return run

    def __reduce__(self):
        # Pickled as its patterns (service/handover.py): rebuilt, and shared, where it lands.
        return pattern_list, (self.sources,)

    def matches(self, value: str) -> bool:
        """True when `value` is included by the list."""
        if self._literals is not None:
            return value in self._literals
        return self._included[self._run(value)]

    def first_match(self, value: str) -> str | None:
        """The source of the pattern that decides `value` (the last one matching it, which may
        be a `!` pattern that excluded it), or None when no pattern matches."""
        last = self._run(value)
        return self.sources[last] if last >= 0 else None

    def any_match(self, values: Iterable[str]) -> bool:
        """True when at least one of `values` (e.g. the changed files of a push) is included."""
        return any(self.matches(v) for v in values)

    def __repr__(self) -> str:
        return f"PatternList({list(self.sources)!r})"


_SHARED: dict = {}     # patterns -> their PatternList (immutable, so one for every rule)


def pattern_list(patterns: Sequence[str]) -> PatternList:
    """`PatternList(patterns)`, the same object for the same patterns: ten thousand rules with
    `branches: [main]` hold one list. Raises GlobError as PatternList does."""
    key = tuple(patterns)
    shared = _SHARED.get(key)
    if shared is None:
        shared = PatternList(key)
        if len(_SHARED) < 65536:
            _SHARED[key] = shared
    return shared


def forget_shared() -> None:
    """Drop the shared lists, checks and automata of the rules loaded so far (a new load starts
    its own; lists the running rules hold stay theirs): a reload never keeps the old rules'."""
    _SHARED.clear()
    _VALID.clear()
    _compile.cache_clear()
    _automaton.cache_clear()
