"""Matching stage: an `Event` + compiled rules -> one `Verdict` per rule (match, no match and why, or needs files).

Input: rules compiled from rules.yaml by `config/load.py`, and a normalized `Event`. Output: verdicts
whose `jobs` carry the rule's `run:` with every `${field}` template rendered. Semantics follow
GitHub Actions' `on: push` filters; a "no" always carries the clause and value that decided it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from bridge.events import Event
from bridge.globs import GlobError, PatternList, pattern_list
from bridge.jobs import Job
from bridge.nearest import NearIndex
from bridge.policies import DEFAULT_GROUP
from bridge.pullfilters import (CommentFilter, PullFilter, comment_problem, compile_comment, compile_forks,
                                compile_pull, pull_problem)
from bridge.templates import compile_template, copy_plain
from bridge.verdicts import PATHS_IGNORE_REASON, PATHS_REASON, SKIP_REASON, StoppedBy, Verdict

SKIP_MARKERS = ("[skip ci]", "[ci skip]", "[no ci]", "[skip actions]", "[actions skip]")
_SKIP_TRAILER = re.compile(r"^skip-checks:\s*true\s*$", re.IGNORECASE | re.MULTILINE)
_GLOB_CHARS = set("*?+[]!\\")
DEFAULT_EVENTS = ("push", "tag")
@dataclass(frozen=True)
class Rule:
    name: str
    line: int
    target: str
    kind: str
    run: dict
    sources: PatternList | None
    repos: PatternList | None
    branches: PatternList | None
    branches_ignore: PatternList | None
    tags: PatternList | None
    tags_ignore: PatternList | None
    paths: PatternList | None
    paths_ignore: PatternList | None
    events: tuple
    on_unknown_files: str = "run"
    literal_repos: tuple | None = field(default=None)   # exact repo names when no glob is used
    literal_folded: frozenset | None = field(default=None)   # the same, case-folded
    repos_folded: PatternList | None = field(default=None, repr=False)   # glob patterns, case-folded
    renderer: object = field(default=None, repr=False, compare=False)
    pull: PullFilter | None = None          # on.pull_request
    forks: object = "skip"                  # on.forks: "skip", "run" or the authors who may
    comment: CommentFilter | None = None    # on.comment
    group: str = DEFAULT_GROUP           # the policy's group template (bridge.policies)
    group_renderer: object = field(default=None, repr=False, compare=False)

    def render(self, fields: dict) -> dict:
        return self.renderer(fields) if self.renderer is not None else copy_plain(self.run)

    def render_group(self, fields: dict) -> str:
        """The group a job of this rule for these event fields belongs to (`${rule}` is the
        rule's name)."""
        if self.group_renderer is None:
            return self.group
        return self.group_renderer({**fields, "rule": self.name})


def _patterns(on, key) -> PatternList | None:
    if key not in on:
        return None
    value = on[key]
    return pattern_list((value,) if isinstance(value, str) else value)


def compile_rule(name, line, on, run, *, kind, on_unknown_files="run", group=DEFAULT_GROUP) -> Rule:
    """Compile a validated `on:`/`run:` pair (config/load.py has already reported every problem)."""
    repos = _patterns(on, "repo")
    literal = folded = None
    if repos is not None and not any(_GLOB_CHARS & set(p) for p in repos.sources):
        literal = tuple(repos.sources)
    elif repos is not None:
        # GitHub and GitLab paths ignore case: their events are compared with these, folded too.
        try:
            folded = pattern_list([p.lower() for p in repos.sources])
        except GlobError:       # not expected (ranges are a-z, A-Z, 0-9): then as written
            folded = repos
    # A rule with pull_request: or comment: (and no events:) takes only those.
    events = on.get("events") or tuple(k for k in ("pull_request", "comment") if k in on) or DEFAULT_EVENTS
    events = (events,) if isinstance(events, str) else tuple(events)
    pull = compile_pull(on)
    if pull is None and "pull_request" in events:
        pull = compile_pull({"pull_request": None})
    plain_run = copy_plain(run)
    return Rule(
        name=name, line=line, target=run["target"], kind=kind, run=plain_run,
        renderer=compile_template(plain_run),
        sources=_patterns(on, "source"), repos=repos,
        branches=_patterns(on, "branches"), branches_ignore=_patterns(on, "branches-ignore"),
        tags=_patterns(on, "tags"), tags_ignore=_patterns(on, "tags-ignore"),
        paths=_patterns(on, "paths"), paths_ignore=_patterns(on, "paths-ignore"),
        events=events, on_unknown_files=on_unknown_files, literal_repos=literal,
        group=group, group_renderer=compile_template(group),
        literal_folded=frozenset(r.lower() for r in literal) if literal is not None else None,
        repos_folded=folded, pull=pull, forks=compile_forks(on), comment=compile_comment(on))


# --- matching --------------------------------------------------------------------------------

def skip_marker(message: str) -> str | None:
    lowered = message.lower()
    for marker in SKIP_MARKERS:
        if marker in lowered:
            return marker
    if "skip-checks" in lowered and _SKIP_TRAILER.search(message):
        return "skip-checks: true"
    return None


def _fmt(patterns: PatternList) -> str:
    return patterns.shown


def _ref_filter(rule: Rule, event: Event) -> tuple[str, StoppedBy] | None:
    """GitHub's branch/tag filters; None when they pass, else the reason and the clause."""
    has_branch = rule.branches is not None or rule.branches_ignore is not None
    has_tag = rule.tags is not None or rule.tags_ignore is not None
    if event.is_tag:
        name, include, ignore, what, key = event.ref_name, rule.tags, rule.tags_ignore, "tag", "tags"
        if has_branch and not has_tag:
            return (f"tag '{name}': the rule filters branches only, so tag pushes do not run",
                    StoppedBy("branches", event.ref))
    elif event.is_branch:
        name, include, ignore, what, key = (event.ref_name, rule.branches, rule.branches_ignore, "branch",
                                            "branches")
        if has_tag and not has_branch:
            return (f"branch '{name}': the rule filters tags only, so branch pushes do not run",
                    StoppedBy("tags", event.ref))
    else:
        return f"ref '{event.ref}' is neither a branch nor a tag", StoppedBy("ref", event.ref)
    if include is not None and not include.matches(name):
        return f"{what} '{name}' is not in {key} {_fmt(include)}", StoppedBy(key, name, include.sources)
    if ignore is not None and ignore.matches(name):
        first = ignore.first_match(name)
        return (f"{what} '{name}' is in {key}-ignore {_fmt(ignore)} ('{first}')",
                StoppedBy(f"{key}-ignore", name, (first,)))
    return None


def path_filter_allows(path_filter: dict, files: Iterable[str]) -> tuple[bool, str]:
    """Re-evaluate a rule's path filters on a resolved file list (the dispatcher's NeedsFiles step)."""
    files = list(files)
    paths = PatternList(path_filter["paths"]) if path_filter.get("paths") else None
    ignore = PatternList(path_filter["paths_ignore"]) if path_filter.get("paths_ignore") else None
    return _paths_decision(paths, ignore, files)


def decide_paths(path_filter: dict, resolution) -> tuple[bool, str]:
    """The dispatcher's answer for a NeedsFiles job, given a changes.FileResolution."""
    if resolution.files is None:
        policy = path_filter.get("on_unknown_files", "run")
        verb = "running" if policy == "run" else "skipping"
        return policy == "run", f"changed files unknown ({resolution.reason}); on_unknown_files: {policy}, {verb}"
    ok, why = path_filter_allows(path_filter, sorted(resolution.files))
    return ok, f"{why} (files from {resolution.source})"


def _paths_decision(paths, ignore, files) -> tuple[bool, str]:
    if paths is not None:
        for f in files:
            if paths.matches(f):
                return True, f"file '{f}' matches paths {_fmt(paths)}"
        return False, f"{PATHS_REASON}{_fmt(paths)} ({_count(files)})"
    if ignore is not None:
        for f in files:
            if not ignore.matches(f):
                return True, f"file '{f}' is not in paths-ignore {_fmt(ignore)}"
        return False, f"{PATHS_IGNORE_REASON}{_fmt(ignore)} ({_count(files)})"
    return True, "no path filter"


def _count(files) -> str:
    n = len(files)
    return "no files changed" if n == 0 else f"{n} file{'s' if n != 1 else ''} changed"


class _Facts:
    """What every rule asks of one event, computed once per event rather than once per rule."""
    __slots__ = ("event", "_fields", "_files", "_files_done", "skip", "fold", "repo_key")

    def __init__(self, event: Event):
        self.event = event
        self.fold = event.repo_case_insensitive
        self.repo_key = event.repo.lower() if self.fold else event.repo
        self._fields = None
        self._files_done = False
        self._files = None
        self.skip = skip_marker(event.head_message) if event.kind not in ("delete", "comment") else None

    @property
    def fields(self) -> dict:
        if self._fields is None:
            self._fields = self.event.template_fields()
        return self._fields

    @property
    def files(self):
        if not self._files_done:
            files = self.event.changed_files()
            self._files = sorted(files) if files is not None else None
            self._files_done = True
        return self._files


def evaluate(rule: Rule, event: Event, facts: _Facts | None = None, *, repo_known: bool = False) -> Verdict:
    """Decide one rule on one event; the reason names the clause and the value. `repo_known`:
    the caller found the rule under the event's repo in its index of literal repo names."""
    facts = facts or _Facts(event)
    if rule.sources is not None and not rule.sources.matches(event.source):
        return _other_source(rule, event)
    if not repo_known and rule.repos is not None and not _repo_matches(rule, facts):
        return _other_repo(rule, event)
    if event.kind not in rule.events:
        stop = StoppedBy("events", event.kind, rule.events)
        if event.kind in ("pull_request", "comment"):
            what = "a pull request" if event.kind == "pull_request" else "a comment on a pull request"
            return Verdict(rule.name, False, f"{what}; the rule has no on.{event.kind} (events "
                                             f"[{', '.join(rule.events)}])", stopped_by=stop)
        if event.kind == "delete":
            return Verdict(rule.name, False,
                           f"'{event.ref}' was deleted; deletions build only with events: [delete]",
                           stopped_by=stop)
        return Verdict(rule.name, False, f"event '{event.kind}' is not in events [{', '.join(rule.events)}]",
                       stopped_by=stop)
    if event.kind == "pull_request":
        return _pull_request(rule, event, facts)
    if event.kind == "comment":
        return _comment(rule, event, facts)
    refused = _ref_filter(rule, event)
    if refused:
        return Verdict(rule.name, False, refused[0], stopped_by=refused[1])
    if facts.skip:
        return Verdict(rule.name, False, f"{SKIP_REASON}{facts.skip}'",
                       stopped_by=StoppedBy("skip", facts.skip))
    needs_files = False
    why = "matched"
    path_filter = None
    if (rule.paths is not None or rule.paths_ignore is not None) and event.kind == "push":
        files = facts.files
        if files is None:
            needs_files = True
            why = "matched branch filters; changed files unknown from the payload, resolved before the build"
            path_filter = {"paths": list(rule.paths.sources) if rule.paths else [],
                           "paths_ignore": list(rule.paths_ignore.sources) if rule.paths_ignore else [],
                           "on_unknown_files": rule.on_unknown_files}
        else:
            ok, why = _paths_decision(rule.paths, rule.paths_ignore, files)
            if not ok:
                return Verdict(rule.name, False, why, stopped_by=_paths_stop(rule, files))
    job = Job(rule=rule.name, target=rule.target, kind=rule.kind, request=rule.render(facts.fields),
              event=event, needs_files=needs_files, path_filter=path_filter,
              group=rule.render_group(facts.fields))
    return Verdict(rule.name, True, why, needs_files=needs_files, jobs=(job,))


def _pull_request(rule: Rule, event: Event, facts: _Facts) -> Verdict:
    """on.pull_request's types and base branches, forks:, the skip marker, then its paths
    (always from the dispatcher's three-dot diff: no host sends a pull request's files)."""
    refused = pull_problem(rule.pull, rule.forks, event)
    if refused:
        return Verdict(rule.name, False, refused[0], stopped_by=StoppedBy(*refused[1:]))
    if facts.skip:
        return Verdict(rule.name, False, f"{SKIP_REASON}{facts.skip}'",
                       stopped_by=StoppedBy("skip", facts.skip))
    pull = rule.pull
    path_filter = None
    why = f"pull request #{event.number} {event.action}"
    if pull.paths is not None or pull.paths_ignore is not None:
        why += "; changed files (three-dot diff against the base) resolved before the build"
        path_filter = {"paths": list(pull.paths.sources) if pull.paths else [],
                       "paths_ignore": list(pull.paths_ignore.sources) if pull.paths_ignore else [],
                       "on_unknown_files": rule.on_unknown_files}
    job = Job(rule=rule.name, target=rule.target, kind=rule.kind, request=rule.render(facts.fields),
              event=event, needs_files=path_filter is not None, path_filter=path_filter,
              group=rule.render_group(facts.fields))
    return Verdict(rule.name, True, why, needs_files=path_filter is not None, jobs=(job,))


def _comment(rule: Rule, event: Event, facts: _Facts) -> Verdict:
    """on.comment: a new comment matching the pattern, by an allowed author, rebuilds the pull
    request's head. Without the head commit in the payload (GitHub) the job keeps its templates
    unrendered: the dispatcher asks the host for the head, then renders them."""
    refused = comment_problem(rule.comment, event)
    if refused:
        return Verdict(rule.name, False, refused[0], stopped_by=StoppedBy(*refused[1:]))
    request = rule.render(facts.fields) if event.sha else copy_plain(rule.run)
    job = Job(rule=rule.name, target=rule.target, kind=rule.kind, request=request, event=event,
              group=rule.render_group(facts.fields))
    return Verdict(rule.name, True, f"comment by '{event.author}' on pull request #{event.number} "
                                    f"matches comment.pattern", jobs=(job,))


def _paths_stop(rule: Rule, files) -> StoppedBy:
    """The clause of a "no" from `_paths_decision`: paths if the rule has them, else paths-ignore."""
    if rule.paths is not None:
        return StoppedBy("paths", _count(files), rule.paths.sources)
    return StoppedBy("paths-ignore", _count(files), rule.paths_ignore.sources)


def _other_source(rule: Rule, event: Event) -> Verdict:
    return Verdict(rule.name, False, f"source '{event.source}' is not in {_fmt(rule.sources)}",
                   stopped_by=StoppedBy("source", event.source, rule.sources.sources))


def _other_repo(rule: Rule, event: Event) -> Verdict:
    return Verdict(rule.name, False, f"repo '{event.repo}' is not in {_fmt(rule.repos)}",
                   stopped_by=StoppedBy("repo", event.repo, rule.repos.sources))


def _repo_matches(rule: Rule, facts: _Facts) -> bool:
    """The rule's `on.repo` against the event's repo; case-insensitively for GitHub and GitLab."""
    if rule.literal_repos is not None:
        return facts.repo_key in (rule.literal_folded if facts.fold else rule.literal_repos)
    if facts.fold:
        return rule.repos_folded.matches(facts.repo_key)
    return rule.repos.matches(facts.repo_key)


class RuleSet:
    """Rules indexed by literal repo name so matching cost does not grow with the rule count."""

    def __init__(self, rules):
        self.rules = tuple(rules)
        self._by_repo: dict[str, list[tuple[int, Rule]]] = {}       # as written
        self._by_folded: dict[str, list[tuple[int, Rule]]] = {}     # case-folded
        self._any_repo: list[tuple[int, Rule]] = []
        for i, rule in enumerate(self.rules):
            if rule.literal_repos is not None:
                for index, repos in ((self._by_repo, rule.literal_repos), (self._by_folded, rule.literal_folded)):
                    for repo in set(repos):
                        index.setdefault(repo, []).append((i, rule))
            else:
                self._any_repo.append((i, rule))
        self._position = {rule.name: i for i, rule in enumerate(self.rules)}
        self._near = NearIndex((i, r.literal_folded) for i, r in enumerate(self.rules)
                               if r.literal_folded is not None)

    def _candidates(self, event: Event, facts: _Facts) -> list[tuple[int, Rule, bool]]:
        """(file position, rule, found by its literal repo) in file order."""
        index = self._by_folded if facts.fold else self._by_repo
        exact = [(i, r, True) for i, r in index.get(facts.repo_key, ())]
        if not self._any_repo:
            return exact
        wild = [(i, r, False) for i, r in self._any_repo]
        if not exact:
            return wild
        return sorted(exact + wild, key=lambda item: item[0])

    def candidates(self, event: Event) -> list[Rule]:
        return [r for _, r, _ in self._candidates(event, _Facts(event))]

    def match(self, event: Event) -> list[Verdict]:
        """Verdicts of the rules that could concern this repo (others: repo did not match)."""
        facts = _Facts(event)
        return [evaluate(rule, event, facts, repo_known=known)
                for _, rule, known in self._candidates(event, facts)]

    def nearest(self, event: Event, verdicts: list[Verdict]) -> tuple[list[Verdict], int]:
        """For "why did my push not build?": the verdicts of the rules `match` passed over
        whose literal repo is nearest the event's (the same but for case, or one path segment
        more, fewer or different; at most `nearest.LIMIT`, nearest first), and how many rules
        remain unnamed by `verdicts` and these."""
        seen = {self._position[v.rule] for v in verdicts if v.rule in self._position}
        near = []
        for i in self._near.lookup(event.repo.lower(), seen):
            rule = self.rules[i]     # not a candidate: its source or its literal repo differs
            sources = rule.sources
            near.append(_other_source(rule, event) if sources is not None and not sources.matches(event.source)
                        else _other_repo(rule, event))
        return near, max(0, len(self.rules) - len(verdicts) - len(near))

    def explain(self, event: Event) -> list[Verdict]:
        """Verdicts of every rule, in file order."""
        facts = _Facts(event)
        return [evaluate(rule, event, facts) for rule in self.rules]
