"""Normalized events: the only shape of a delivery that exists past `providers/`.

Input: nothing (plain frozen dataclasses). Output: `Event`, `Commit` and `Ignored`, plus the
template fields a rule's `run:` may name.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

ZERO_SHA = "0" * 40

#: Event kinds a rule's `on.events` may name.
KINDS = ("push", "tag", "delete", "pull_request", "comment")
#: Kinds about a pull/merge request: their ref is the host's pull ref (`refs/pull/N/head`).
PULL_KINDS = ("pull_request", "comment")

#: GitHub Actions' `on: pull_request` without `types`: opened, synchronize, reopened.
DEFAULT_PULL_TYPES = ("opened", "synchronize", "reopened")
#: Every action word a pull-request event may carry (GitHub Actions' words; other hosts map to them).
PULL_ACTIONS = (
    "opened", "edited", "closed", "reopened", "synchronize", "assigned", "unassigned", "labeled",
    "unlabeled", "converted_to_draft", "ready_for_review", "locked", "unlocked", "milestoned",
    "demilestoned", "enqueued", "dequeued", "review_requested", "review_request_removed",
    "auto_merge_enabled", "auto_merge_disabled", "approved", "unapproved")
#: GitHub's author associations, most trusted first (GitLab and others send none: "").
AUTHOR_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR",
                       "FIRST_TIMER", "MANNEQUIN", "NONE")

#: Template fields that are empty when a branch or tag is deleted (there is no commit).
COMMIT_FIELDS = ("sha", "short_sha")


@dataclass(frozen=True)
class Commit:
    id: str
    message: str = ""
    author: str = ""
    timestamp: str = ""
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: False when the host sent no file lists for this commit (GitLab System Hooks, Bitbucket).
    has_files: bool = True


@dataclass(frozen=True)
class Event:
    provider: str               # the registered provider name (bridge.providers)
    source: str                 # the rules.yaml source name (URL path /hooks/<source>)
    delivery_id: str            # the host's delivery id, or one we made up if it sent none
    kind: str                   # "push" | "tag" | "delete" | "pull_request" | "comment"
    repo: str                   # full path: "acme/api", "group/sub/proj"
    ref: str                    # full ref: "refs/heads/main", "refs/tags/v1.0"
    ref_name: str               # branch or tag name (may contain "/")
    before: str
    after: str
    sha: str | None             # the commit to build (tags: the commit, not the tag object);
                                # None when there is none: a deleted branch or tag
    created: bool = False
    deleted: bool = False
    forced: bool = False
    commits: tuple[Commit, ...] = ()
    commits_complete: bool = True   # the provider's answer: does `commits` hold every new commit?
    pusher: str = ""
    default_branch: str = ""
    clone_urls: tuple[str, ...] = ()
    head_message: str = ""      # the head commit's message (skip markers)
    #: The host treats repository paths case-insensitively (GitHub's `Acme/API` is `acme/api`):
    #: rules' repo patterns are compared with the repo case-folded. Set by the provider.
    repo_case_insensitive: bool = False
    # Pull/merge requests (kind "pull_request") and their comments (kind "comment"); empty on pushes.
    number: int | None = None   # GitHub's number, GitLab's iid
    action: str = ""            # GitHub Actions' word: opened, synchronize, closed, ... / created
    host_action: str = ""       # the host's own word (GitLab: open, update, merge, ...)
    base_ref: str = ""          # the target branch's name
    head_ref: str = ""          # the source branch's name
    head_sha: str = ""          # the head commit (= sha; "" for a comment the host sent without it)
    head_repo: str = ""         # the source repository's path
    fork: bool = False          # the head repository is not the base repository (by id or path)
    merged: bool = False
    draft: bool = False
    author: str = ""            # who opened the pull request, or who wrote the comment
    author_association: str = ""    # OWNER, MEMBER, COLLABORATOR, ... ("" where the host has none)
    comment: str = ""           # a comment's text (kind "comment")
    comment_id: str = ""
    updated_at: str = ""        # the host's timestamp of this change (tells resends from news)

    @property
    def is_pull(self) -> bool:
        return self.kind in PULL_KINDS

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith("refs/tags/")

    @property
    def is_branch(self) -> bool:
        return self.ref.startswith("refs/heads/")

    @property
    def branch(self) -> str:
        return self.ref_name if self.is_branch else ""

    @property
    def tag(self) -> str:
        return self.ref_name if self.is_tag else ""

    def changed_files(self) -> frozenset[str] | None:
        """Union of the payload's per-commit file lists, or None when it cannot be trusted."""
        if self.is_pull:
            return None         # no host sends a pull request's files: the mirror's three-dot diff
        if not self.commits_complete or any(not c.has_files for c in self.commits):
            return None         # the provider said the list may be cut, or it has no file lists
        if self.forced:
            # The new commits' lists miss what the dropped commits changed: only a diff knows.
            return None
        if not self.commits and not self.deleted and not self.created:
            return None
        if self.created and not self.commits:
            # A new ref with no new commits listed: the payload says nothing about files.
            return None
        files: set[str] = set()
        for c in self.commits:
            files.update(c.added)
            files.update(c.modified)
            files.update(c.removed)
        return frozenset(files)

    def template_fields(self) -> dict[str, str]:
        """The named fields `${...}` in rules.yaml may use. Nothing else is reachable."""
        return {
            "sha": self.sha or "",                  # empty on deletions (validated in config)
            "short_sha": (self.sha or "")[:8],
            "branch": self.branch,
            "tag": self.tag,
            "ref": self.ref,
            "ref_name": self.ref_name,
            "repo": self.repo,
            "before": self.before,
            "after": self.after,
            "pusher": self.pusher,
            "delivery": self.delivery_id,
            "source": self.source,
            "provider": self.provider,
            "kind": self.kind,
            "number": "" if self.number is None else str(self.number),
            "action": self.action,
            "base_ref": self.base_ref,
            "head_ref": self.head_ref,
            "head_sha": self.head_sha,
            "head_repo": self.head_repo,
        }

    def to_dict(self) -> dict:
        # By hand: dataclasses.asdict deep-copies every value and costs ~100 us per delivery.
        # A push leaves out the pull-request fields (all empty): stored events stay as they were.
        d = {name: getattr(self, name) for name in (_EVENT_FIELDS if self.is_pull else _PUSH_FIELDS)}
        d["commits"] = [{name: getattr(c, name) for name in _COMMIT_FIELDS} for c in self.commits]
        for c in d["commits"]:
            c["added"], c["modified"], c["removed"] = list(c["added"]), list(c["modified"]), list(c["removed"])
        d["clone_urls"] = list(self.clone_urls)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        d = dict(d)
        d["commits"] = tuple(
            Commit(**{**c, "added": tuple(c.get("added", ())), "modified": tuple(c.get("modified", ())),
                      "removed": tuple(c.get("removed", ()))})
            for c in d.get("commits", ()))
        d["clone_urls"] = tuple(d.get("clone_urls", ()))
        if d.get("deleted") and d.get("sha") == ZERO_SHA:
            d["sha"] = None         # stored before deletions had no sha
        return cls(**d)


_EVENT_FIELDS = tuple(f.name for f in fields(Event))
_PULL_FIELDS = ("number", "action", "host_action", "base_ref", "head_ref", "head_sha", "head_repo", "fork",
                "merged", "draft", "author", "author_association", "comment", "comment_id", "updated_at")
_PUSH_FIELDS = tuple(name for name in _EVENT_FIELDS if name not in _PULL_FIELDS)
_COMMIT_FIELDS = tuple(f.name for f in fields(Commit))

#: Template fields, for validating `${...}` references in rules.yaml.
TEMPLATE_FIELDS = frozenset(
    ("sha", "short_sha", "branch", "tag", "ref", "ref_name", "repo", "before", "after", "pusher",
     "delivery", "source", "provider", "kind", "number", "action", "base_ref", "head_ref", "head_sha",
     "head_repo"))


@dataclass(frozen=True)
class Ignored:
    """A verified delivery that is not a push we act on (ping, other events, repository_update)."""
    reason: str
    event_name: str = ""
    extra: dict = field(default_factory=dict)
