"""Pull/merge requests, shared by the host modules: the pieces every host's pull-request and
comment payloads are turned into, so each host module only says where its fields are.

Input: the values a host module read from its payload. Output: `Event`s of kind `pull_request`
or `comment`, with the host's pull ref as `ref`, or `BadPayload` for a branch name git refuses.
"""
from __future__ import annotations

from collections.abc import Callable

from bridge.errors import BadPayload
from bridge.events import Event
from bridge.providers import body as b
from bridge.refnames import branch_or_tag_problem

#: The ref most hosts serve a pull request's head commit under, in the base repository; a host
#: module names its own (GitLab: refs/merge-requests/{n}/head) through `event(pull_ref=...)`.
PULL_REF = "refs/pull/{n}/head"


def branch(obj: dict, path: str, *, what: str, required: bool = True) -> str:
    """A branch name at `path`, checked with git's rules as `refs/heads/<name>` (BadPayload if
    git would refuse it: such a name never reaches a build's parameters or environment)."""
    value = b.field(obj, path, str, required=required, default="", what=what)
    if value:
        why = branch_or_tag_problem("refs/heads/" + value)
        if why is not None:
            raise BadPayload(f"{what} field '{path}' is not a branch name git accepts: {why} "
                             f"({value[:200]!r})")
    return value


def number(obj: dict, path: str, *, what: str) -> int:
    value = b.field(obj, path, int, required=True, what=what)
    if value < 1:
        raise BadPayload(f"{what} field '{path}' is not a pull request number")
    return value


def head_of(pull, *, what: str, fork: Callable[[dict], bool]) -> dict:
    """A pull request as the host's API answers `GET .../pulls/{n}` (GitHub, Gitea), as the Event
    fields a comment's payload lacks (head_sha, sha, after, head_ref, base_ref, head_repo, fork)
    plus `state`. `fork(doc)` tells a fork by the host's own fields, `doc` holding the answer
    under `pull_request`. Raises BadPayload for an answer that is no pull request."""
    doc = {"pull_request": pull}
    head_sha = b.sha(doc, "pull_request.head.sha", required=True, what=what)
    return {"head_sha": head_sha, "sha": head_sha, "after": head_sha,
            "head_ref": branch(doc, "pull_request.head.ref", what=what),
            "base_ref": branch(doc, "pull_request.base.ref", what=what),
            "head_repo": b.field(doc, "pull_request.head.repo.full_name", str, default="", what=what),
            "fork": fork(doc),
            "state": b.field(doc, "pull_request.state", str, default="open", what=what)}


def ref_of(n: int, template: str | None = None) -> str:
    return (template or PULL_REF).format(n=n)


def event(*, provider: str, source: str, delivery_id: str, kind: str, repo: str, number: int,
          head_sha: str, before: str = "", clone_urls=(), default_branch: str = "", pusher: str = "",
          head_message: str = "", pull_ref: str | None = None, ref: str | None = None,
          **pull) -> Event:
    """A `pull_request` or `comment` Event: ref is the host's pull ref, sha the head commit
    (None while unknown: a GitHub comment names no commit; the dispatcher asks the host)."""
    ref = ref or ref_of(number, pull_ref)
    return Event(
        provider=provider, source=source, delivery_id=delivery_id, kind=kind, repo=repo,
        ref=ref, ref_name=ref[len("refs/"):], before=before, after=head_sha, sha=head_sha or None,
        commits=(), commits_complete=False, pusher=pusher, default_branch=default_branch,
        clone_urls=tuple(url for url in clone_urls if url), head_message=head_message,
        number=number, head_sha=head_sha, **pull)
