"""Pattern lists shared among rules: one object for the same patterns, pickled as its patterns
(service/handover.py hands rules to the children so), and their checks cached without changing
what they say.

Pure functions, no I/O."""
from __future__ import annotations

import pickle

from bridge.globs import PatternList, pattern_list, validate_patterns


def test_the_same_patterns_give_the_same_list():
    first = pattern_list(["main", "release/**"])
    assert pattern_list(("main", "release/**")) is first
    assert pattern_list(["main"]) is not first
    assert first.matches("release/1.0") and not first.matches("dev")


def test_a_list_travels_by_pickle_as_its_patterns_and_lands_shared():
    original = PatternList(["release/**", "!release/old"])
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is PatternList and copy.sources == original.sources
    assert copy.matches("release/1") and not copy.matches("release/old")
    assert pickle.loads(pickle.dumps(original)) is copy     # one object per pattern list where it lands


def test_checks_of_lists_with_values_that_are_no_text_say_so_and_do_not_raise():
    # An unhashable entry (a YAML mapping in the list) must not reach the cache's key.
    problems = validate_patterns([{"branch": "main"}, "main"])
    assert problems and "{'branch': 'main'}" in problems[0]
    assert validate_patterns([{"branch": "main"}]) and validate_patterns([["main"]])
    assert validate_patterns([3, "main"]) and validate_patterns([3, "main"]) == validate_patterns([3, "main"])


def test_a_cached_check_says_the_same_each_time():
    assert validate_patterns(["main", "[z-a]"]) == validate_patterns(["main", "[z-a]"]) != []
    assert validate_patterns(["!main"]) == validate_patterns(("!main",)) != []
    assert validate_patterns(["main"]) == [] == validate_patterns(["main"])
