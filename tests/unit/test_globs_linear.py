"""Tests for bridge.globs in linear time: the issue's backtracking patterns within a time bound,
and property tests that the automaton agrees with a reference, the regex translation the
bridge used before (kept here only: it backtracks, so the generated sizes stay small)."""
from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from bridge import globs
from bridge.config.load import load_config
from bridge.events import Event
from bridge.globs import GlobError, PatternList, compile_pattern

# --- the reference: GitHub's cheat sheet as a backtracking regex (the bridge's old translation) --


def reference_regex(pattern: str) -> re.Pattern:
    body = pattern[1:] if pattern.startswith("!") else pattern
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "*":
            if body.startswith("**/", i) and body[i + 3:i + 4] not in ("?", "+"):
                out.append("(?:.+/)?")
                i += 3
            elif body.startswith("**", i):
                out.append(".*")
                i += 2
            else:
                out.append("[^/]*")
                i += 1
        elif c in "?+":
            out.append(c)
            i += 1
        elif c == "[":
            close = body.index("]", i)
            out.append(body[i:close + 1])     # letters, digits and a-z ranges mean the same in re
            i = close + 1
        else:
            if c == "\\":
                i += 1
            out.append(re.escape(body[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def reference_list(patterns: list[str], value: str) -> str | None:
    """The deciding pattern under GitHub's rule: the last one that matches."""
    decided = None
    for p in patterns:
        if reference_regex(p).fullmatch(value):
            decided = p
    return decided


# --- the attacks: each match well under 10 ms -------------------------------------------

ATTACKS = [
    ("*-*-*-*-*-*-x", "-" * 128),           # 29.5 s before
    ("*a*a*a*a*a*a*a*a*b", "a" * 48),       # 27.7 s before
    ("*-*-*-*-*-*-x", "-" * 100),            # the 100-character branch that froze both workers
    ("*-*-*-*-*-*-x", "-" * 127 + "/"),
    ("**-**-**-**-**-**-x", "-" * 128),
    ("**/a/**/a/**/a/**/a/**/b", "a/" * 64),
    ("*a?*a?*a?*a?*a?*a?b", "a" * 120),
    ("[ab]+*[ab]+*[ab]+*[ab]+c", "ab" * 64),
]


def best_of_3(fn, value) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn(value)
        times.append(time.perf_counter() - t0)
    return min(times)


@pytest.mark.parametrize("pattern,value", ATTACKS, ids=[f"{p}~{len(v)}" for p, v in ATTACKS])
def test_backtracking_patterns_match_in_under_10ms(pattern, value):
    plist = PatternList([pattern])
    single = compile_pattern(pattern)
    assert plist.matches(value) is False and single.match(value) is False
    # The bound the issue asks for, with a margin for a loaded machine: best of three runs.
    assert best_of_3(plist.matches, value) < 0.010
    assert best_of_3(single.match, value) < 0.010
    assert best_of_3(PatternList(["main", "!x", pattern]).first_match, value) < 0.010


def test_time_grows_linearly_not_polynomially():
    # 64 times the input: a backtracking matcher takes 64^6 times as long, this one ~64 times.
    plist = PatternList(["*-*-*-*-*-*-x"])
    assert not plist.matches("-" * 128 * 64)
    assert plist.matches("-" * 128 * 64 + "x")
    assert best_of_3(plist.matches, "-" * 128 * 64) < 0.5


def test_a_rule_with_a_backtracking_pattern_decides_a_100_character_branch():
    text = ("sources:\n  github: {provider: github, secrets: ['${env:S}']}\n"
            "targets:\n  mem: {kind: memory}\n"
            "rules:\n  - name: evil\n    on: {repo: acme/api, branches: ['*-*-*-*-*-*-x']}\n"
            "    run: {target: mem}\n")
    ruleset = load_config("rules.yaml", text=text, environ={"S": "x"}).ruleset
    for branch, expected in (("-" * 100, False), ("-" * 99 + "x", True)):
        event = Event(provider="github", source="github", delivery_id="d", kind="push",
                      repo="acme/api", ref=f"refs/heads/{branch}", ref_name=branch,
                      before="b" * 40, after="c" * 40, sha="c" * 40)
        [verdict] = ruleset.match(event)
        assert verdict.matched is expected, verdict.reason


def test_the_automaton_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(globs, "MAX_STATES", 8)
    monkeypatch.setattr(globs, "MAX_MOVES", 40)
    auto = globs._Automaton([compile_pattern("**/a*b?c/**")._tokens])
    value = "".join(chr(0x4e00 + k) for k in range(500)) + "/abc/x"
    assert auto.run(value) == 0
    assert auto.run(value.replace("abc", "ac")) == 0
    assert auto.run(value.replace("abc", "abd")) == -1
    assert len(auto._states) <= 8 and auto._moves <= 40


# --- property tests: the automaton agrees with the reference ------------------------------------

# Pieces of patterns: literals (some that `*`, `?`, `/` and classes care about), wildcards,
# classes, escapes. A quantifier follows only a literal or a class.
_LITERALS = ["a", "b", "x", "src", "docs", "-", ".", "/", "v1", "é", "\n", "!", "("]
_REPEATABLE = _LITERALS + ["[ab]", "[0-9]", "[a-c1]", "\\*", "\\?", "\\[", "\\\\"]
_WILD = ["*", "**", "**/", "/**", "/**/", "*/"]


@st.composite
def patterns(draw, max_wild: int = 3):
    parts, wild = [], 0
    for _ in range(draw(st.integers(1, 6))):
        if wild < max_wild and draw(st.booleans()):
            parts.append(draw(st.sampled_from(_WILD)))
            wild += 1
        else:
            piece = draw(st.sampled_from(_REPEATABLE))
            q = draw(st.sampled_from(["", "", "?", "+"]))
            if q == "+":
                wild += 1
            parts.append(piece + (q if wild <= max_wild else ""))
    pattern = "".join(parts)
    if pattern.startswith("!"):
        pattern = "\\" + pattern        # a literal "!" at the start is written escaped
    try:
        compile_pattern(pattern)
    except GlobError:
        assume(False)
    return pattern


def _instance(draw, pattern: str) -> str:
    """A value built from the pattern's own pieces: each wildcard filled with its literals,
    so that most values match and the rest miss by little."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    fill = st.lists(st.sampled_from(re.findall(r"[^*?+\[\]\\]+", body) + ["a", "/", "-"]),
                    max_size=3).map("".join)
    out, i = [], 0
    while i < len(body):
        if body.startswith("**/", i) and body[i + 3:i + 4] not in ("?", "+"):
            out.append(draw(st.sampled_from(["", draw(fill) + "/"])))
            i += 3
        elif body.startswith("**", i):
            out.append(draw(fill))
            i += 2
        elif body[i] == "*":
            out.append(draw(fill).replace("/", "") if draw(st.integers(0, 4)) else draw(fill))
            i += 1
        else:
            if body[i] == "[":
                close = body.index("]", i)
                chars = [c for c in re.findall(r".-.|.", body[i + 1:close])]
                token = draw(st.sampled_from(chars))[0]
                i = close + 1
            elif body[i] == "\\":
                token, i = body[i + 1], i + 2
            else:
                token, i = body[i], i + 1
            q = body[i] if i < len(body) and body[i] in "?+" else ""
            i += bool(q)
            out.append(token * (draw(st.integers(0, 1)) if q == "?" else
                                draw(st.integers(1, 3)) if q == "+" else 1))
    value = "".join(out)
    if draw(st.integers(0, 3)) == 0 and value:       # a near miss: one character changed
        k = draw(st.integers(0, len(value) - 1))
        value = value[:k] + draw(st.sampled_from(["", "/", "a", "aa", "é"])) + value[k + 1:]
    return value


@st.composite
def pattern_and_value(draw):
    pattern = draw(patterns())
    return pattern, _instance(draw, pattern)


_PROPERTY = settings(max_examples=400, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@_PROPERTY
@given(pattern_and_value())
@example(("**src", "a/src"))
@example(("**/*src/**", "a/my-src/b"))
@example(("**/*src/**", "a/src"))
@example(("[ab]+/**/x?", "abba/x"))
@example(("[ab]+/**/x?", "ab/c/d/"))
@example(("**/", "/"))
@example(("**/x", "/x"))
@example(("*-*-*-x", "a-b-c-x"))
@example(("**/?a", "xa"))
@example(("**/+a", "x//a"))
@example(("a**/", "a"))
def test_pattern_agrees_with_the_reference(case):
    pattern, value = case
    expected = reference_regex(pattern).fullmatch(value) is not None
    assert compile_pattern(pattern).match(value) is expected
    assert PatternList([pattern]).matches(value) is expected


@st.composite
def list_and_values(draw):
    plist = draw(st.lists(patterns(max_wild=2), min_size=1, max_size=4))
    plist = [("!" + p if i and draw(st.booleans()) else p) for i, p in enumerate(plist)]
    values = [_instance(draw, draw(st.sampled_from(plist))) for _ in range(4)]
    return plist, values


@_PROPERTY
@given(list_and_values())
def test_ordered_list_agrees_with_last_match_wins(case):
    plist, values = case
    compiled = PatternList(plist)
    for value in values:
        deciding = reference_list(plist, value)
        assert compiled.first_match(value) == deciding, value
        assert compiled.matches(value) is (deciding is not None and not deciding.startswith("!"))


def test_the_generated_values_do_match_often():
    # Guard the generator: a property test that never sees a match proves little.
    found = []

    @settings(max_examples=200, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(pattern_and_value())
    def probe(case):
        found.append(compile_pattern(case[0]).match(case[1]))

    probe()
    assert 0.3 < sum(found) / len(found) < 0.95
