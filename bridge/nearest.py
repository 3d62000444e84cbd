"""Near misses for "why did my push not build?": the rules whose literal repo is nearest a push's.

Input: the case-folded literal repos of every rule (`RuleSet` builds this once) and an event's
repo. Output: rule positions, nearest first: the same repo but for case, then one path segment
more or fewer (`group/proj` for `group/sub/proj`), then one segment different (`acme/api` for
`acme-corp/api`); a few dictionary lookups per event, whatever the number of rules.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from heapq import nsmallest

#: At most this many near rules are named in an answer; the rest are counted.
LIMIT = 20

_HOLE = "\x00"      # stands for the one segment that differs (never in a repo path)


class NearIndex:
    """Literal repo names, case-folded, indexed by every one-segment variation. A variation with
    a different segment keeps its segments sorted, so that only the neighbours of the push's
    segment (those sharing the longest start with it) are looked at: an organisation with
    thousands of repositories costs a bisection, not a scan."""

    def __init__(self, rules: Iterable[tuple[int, Iterable[str]]]):
        self._same: dict[str, list[int]] = {}
        self._longer: dict[str, list[int]] = {}        # a rule's repo less one segment -> rules
        holes: dict[str, dict[str, list[int]]] = {}    # repo with a hole -> segment -> rules
        for position, repos in rules:
            for repo in repos:
                self._same.setdefault(repo, []).append(position)
                segments = repo.split("/")
                for i, segment in enumerate(segments):
                    hole = "/".join(segments[:i] + [_HOLE] + segments[i + 1:])
                    holes.setdefault(hole, {}).setdefault(segment, []).append(position)
                    if len(segments) > 1:
                        self._longer.setdefault("/".join(segments[:i] + segments[i + 1:]), []).append(position)
        self._holes = {hole: (sorted(by_segment), by_segment) for hole, by_segment in holes.items()}

    def lookup(self, repo: str, exclude: frozenset | set = frozenset(), limit: int = LIMIT) -> list[int]:
        """Positions of the rules nearest `repo` (case-folded), nearest first, without `exclude`."""
        ranked: dict[int, tuple] = {}

        def add(positions, rank):
            for position in positions:
                if position not in exclude and (position not in ranked or rank < ranked[position]):
                    ranked[position] = rank

        add(self._same.get(repo, ()), (0,))
        add(self._longer.get(repo, ()), (1,))              # the rule names one segment more
        segments = repo.split("/")
        if len(segments) > 1:
            for i in range(len(segments)):                 # the rule names one segment fewer
                add(self._same.get("/".join(segments[:i] + segments[i + 1:]), ()), (1,))
        for i, segment in enumerate(segments):             # the rule names one segment differently
            bucket = self._holes.get("/".join(segments[:i] + [_HOLE] + segments[i + 1:]))
            if bucket is not None:
                for theirs in _neighbours(segment, *bucket, limit):
                    add(bucket[1][theirs], (2, -_likeness(segment, theirs)))
        if len(ranked) > limit:
            return [p for _, p in nsmallest(limit, ((rank, p) for p, rank in ranked.items()))]
        return sorted(ranked, key=lambda p: (ranked[p], p))


def _neighbours(segment: str, names: list[str], by_segment: dict, limit: int):
    """The other segments of a bucket nearest `segment` in sorted order (the longest shared
    start), the likelier first, until they name `limit` rules."""
    at = bisect_left(names, segment)
    left, right = at - 1, at
    if right < len(names) and names[right] == segment:
        right += 1
    named = 0
    while named < limit and (left >= 0 or right < len(names)):
        if right >= len(names) or (left >= 0 and _likeness(segment, names[left])
                                   >= _likeness(segment, names[right])):
            theirs, left = names[left], left - 1
        else:
            theirs, right = names[right], right + 1
        named += len(by_segment[theirs])
        yield theirs


def _likeness(a: str, b: str) -> float:
    """The share of two segments' characters that agree at their start and end: `api` is nearer
    `apx` than `acme` is `acme-corp`, and `web` is far from both."""
    n = min(len(a), len(b))
    start = 0
    while start < n and a[start] == b[start]:
        start += 1
    end = 0
    while end < n - start and a[-1 - end] == b[-1 - end]:
        end += 1
    return (start + end) / max(len(a), len(b), 1)
