"""Matching stage, pull requests: a rule's `on.pull_request`, `on.forks` and `on.comment`
compiled, and decided on one pull-request or comment `Event` (GitHub Actions' `on:
pull_request` semantics: `branches` filter the base branch, `types` default to opened,
synchronize and reopened, `paths` are the three-dot diff the dispatcher computes).

Input: a validated `on:` mapping; an Event. Output: `PullFilter`/`CommentFilter`, and None when
the event passes or a `Refusal` (the reason naming the clause and the value, and them as data)
when it does not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.events import AUTHOR_ASSOCIATIONS, DEFAULT_PULL_TYPES, Event
from bridge.globs import PatternList, pattern_list

#: Who may start a build from a fork's pull request or by a comment, when a rule names nobody.
DEFAULT_AUTHORS = ("OWNER", "MEMBER", "COLLABORATOR")
#: A comment is searched for a rule's pattern in its first this many characters.
COMMENT_SCAN = 8192

#: Why an event does not pass: (reason, clause, the event's value, the clause's patterns), the
#: makings of the verdict's reason and its `rules.StoppedBy`.
Refusal = tuple[str, str, str, tuple]


@dataclass(frozen=True)
class PullFilter:
    types: tuple
    branches: PatternList | None
    branches_ignore: PatternList | None
    paths: PatternList | None
    paths_ignore: PatternList | None


@dataclass(frozen=True)
class CommentFilter:
    pattern: re.Pattern
    authors: tuple


def _patterns(spec: dict, key: str) -> PatternList | None:
    value = spec.get(key)
    if value is None:
        return None
    return pattern_list((value,) if isinstance(value, str) else value)


def compile_pull(on: dict) -> PullFilter | None:
    if "pull_request" not in on:
        return None
    spec = on.get("pull_request") or {}
    types = spec.get("types", DEFAULT_PULL_TYPES)
    return PullFilter(types=(types,) if isinstance(types, str) else tuple(types),
                      branches=_patterns(spec, "branches"),
                      branches_ignore=_patterns(spec, "branches-ignore"),
                      paths=_patterns(spec, "paths"), paths_ignore=_patterns(spec, "paths-ignore"))


def compile_forks(on: dict) -> str | tuple:
    """"skip" (the default), "run", or the tuple of author associations/usernames that may."""
    forks = on.get("forks", "skip")
    if isinstance(forks, dict):
        authors = forks.get("authors", DEFAULT_AUTHORS)
        return tuple([authors] if isinstance(authors, str) else authors)
    return forks


def compile_comment(on: dict) -> CommentFilter | None:
    spec = on.get("comment")
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"pattern": spec}
    authors = spec.get("authors", DEFAULT_AUTHORS)
    return CommentFilter(pattern=re.compile(spec["pattern"]),
                         authors=tuple([authors] if isinstance(authors, str) else authors))


def author_allowed(event: Event, authors: tuple) -> bool:
    """`authors` lists GitHub's associations (OWNER, MEMBER, ...) and/or user names: the
    event's author must have one of those associations or be one of those users."""
    return (bool(event.author_association) and event.author_association in authors) \
        or (bool(event.author) and event.author in authors)


def _who(event: Event) -> str:
    assoc = f" ({event.author_association})" if event.author_association else ""
    return f"'{event.author}'{assoc}" if event.author else f"an unknown author{assoc}"


def _names_hint(event: Event, authors: tuple) -> str:
    """GitLab (and any host without author associations) is matched by user names only."""
    if event.author_association or not any(a in AUTHOR_ASSOCIATIONS for a in authors):
        return ""
    return f" ({event.provider} sends no author association: list user names)"


def pull_problem(pull: PullFilter, forks, event: Event) -> Refusal | None:
    """None when a pull request event passes the rule's `pull_request:` and `forks:`."""
    n = f"pull request #{event.number}"
    if event.action not in pull.types:
        return (f"{n} action '{event.action}' is not in pull_request.types [{', '.join(pull.types)}]",
                "pull_request.types", event.action, pull.types)
    base = event.base_ref
    if pull.branches is not None and not pull.branches.matches(base):
        return (f"{n} base branch '{base}' is not in pull_request.branches {pull.branches.shown}",
                "pull_request.branches", base, tuple(pull.branches.sources))
    if pull.branches_ignore is not None and pull.branches_ignore.matches(base):
        first = pull.branches_ignore.first_match(base)
        return (f"{n} base branch '{base}' is in pull_request.branches-ignore "
                f"{pull.branches_ignore.shown} ('{first}')", "pull_request.branches-ignore", base, (first,))
    return fork_problem(forks, event)


def fork_problem(forks, event: Event) -> Refusal | None:
    if not event.fork or forks == "run":
        return None
    head = f" '{event.head_repo}'" if event.head_repo else ""
    if forks == "skip":
        return (f"pull request #{event.number} comes from the fork{head}; forks: skip (the "
                "default: a fork's author gets no build with this target's credentials; "
                "forks: run or forks: {authors: [...]} opts in)", "forks", event.head_repo, ("skip",))
    if author_allowed(event, forks):
        return None
    return (f"pull request #{event.number} comes from the fork{head} by {_who(event)}, who is not "
            f"in forks.authors [{', '.join(forks)}]{_names_hint(event, forks)}", "forks",
            event.author, tuple(forks))


def comment_problem(comment: CommentFilter, event: Event) -> Refusal | None:
    """None when a comment event asks for a build the rule gives."""
    n = f"comment on pull request #{event.number}"
    if event.action != "created":
        return f"{n} was {event.action or 'changed'}; only new comments start builds", "comment", event.action, ()
    if not comment.pattern.search(event.comment[:COMMENT_SCAN]):
        return (f"{n} does not match comment.pattern '{comment.pattern.pattern}'", "comment.pattern", "",
                (comment.pattern.pattern,))
    if not author_allowed(event, comment.authors):
        return (f"{n} by {_who(event)}: not in comment.authors [{', '.join(comment.authors)}]"
                f"{_names_hint(event, comment.authors)}", "comment.authors", event.author, comment.authors)
    return None
