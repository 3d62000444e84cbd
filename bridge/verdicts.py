"""Matching stage, its answer: one rule's `Verdict` on one event, and `StoppedBy`, the clause that
stopped a rule, kept with the stored verdict so later stages (statuses, the delivery page) read
why instead of running the rules again.

Input: what `rules.evaluate` decided. Output: plain values, to and from their stored dicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# How reasons begin for the clauses a skipped-status reports (StoppedBy.from_reason reads them).
SKIP_REASON = "head commit message contains '"
PATHS_REASON = "no changed file matches paths "
PATHS_IGNORE_REASON = "every changed file is in paths-ignore "


class StoppedBy(NamedTuple):
    """Which clause of a rule's `on:` stopped it, with what the reason quotes.

    `clause`: "source", "repo", "events", "ref" (neither a branch nor a tag), "branches" /
    "tags" (the include list, or the rule filters only the other kind of ref), "branches-ignore"
    / "tags-ignore", "skip" (a skip marker in the head commit's message), "paths" /
    "paths-ignore"; for pull requests "pull_request.types", "pull_request.branches",
    "pull_request.branches-ignore", "forks", "comment" (not a new comment), "comment.pattern",
    "comment.authors" (bridge/pullfilters.py). `value`: the event's value the clause refused (the source, repo, event kind,
    ref name, the full ref when the kind of ref was refused, the marker, or how many files
    changed). `patterns`: the clause's patterns that decided (all of an include list, none of
    which matched; the one of an ignore list that did)."""
    clause: str
    value: str
    patterns: tuple = ()

    def to_dict(self) -> dict:
        return {"clause": self.clause, "value": self.value, "patterns": list(self.patterns)}

    @classmethod
    def from_dict(cls, d: dict) -> "StoppedBy":
        return cls(d["clause"], d.get("value", ""), tuple(d.get("patterns") or ()))

    @classmethod
    def from_reason(cls, reason: str) -> "StoppedBy | None":
        """For a verdict stored before verdicts kept `stopped_by`: the skip-marker and path
        clauses, read back from the reason's words (the formats below); None for the others."""
        if reason.startswith(SKIP_REASON) and reason.endswith("'"):
            return cls("skip", reason[len(SKIP_REASON):-1])
        if reason.startswith(PATHS_REASON):
            return cls("paths", "")
        if reason.startswith(PATHS_IGNORE_REASON):
            return cls("paths-ignore", "")
        return None


@dataclass(slots=True)
class Verdict:
    """One rule's decision on one event. Falsy unless the rule matched (STYLE.md #4); a "no"
    says why in words (`reason`) and as data (`stopped_by`)."""
    rule: str
    matched: bool
    reason: str
    needs_files: bool = False
    jobs: tuple = ()
    stopped_by: StoppedBy | None = None

    def __bool__(self) -> bool:
        return self.matched

    def to_dict(self) -> dict:
        return {"rule": self.rule, "matched": self.matched, "reason": self.reason,
                "needs_files": self.needs_files,
                "stopped_by": self.stopped_by.to_dict() if self.stopped_by is not None else None}
