"""GitHub provider: checks `X-Hub-Signature-256` over the raw body, then turns `push`,
`pull_request` and `issue_comment` (on a pull request) deliveries into an `Event`; `ping` and
every other event become `Ignored`. Also signing for `cibridge send`, API URL, headers and clone
rules; its REST API (commit statuses, pull heads, reconcile's listings) is `github_api.py`,
exposed here.

Input: request headers and the raw body bytes. Output: `Event` | `Ignored`, or
`VerificationFailed` (401) / `BadPayload` (400).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bridge.errors import BadPayload, VerificationFailed
from bridge.events import ZERO_SHA, Event, Ignored
from bridge.providers import body as b
from bridge.providers import pulls
from bridge.providers.hmacsig import hex_digest, signed_by_one_of
# The host's REST API (statuses, pull heads, reconcile's listings) lives beside it; this module is its face.
from bridge.providers.github_api import (DELIVERY_HEADER, EVENT_HEADER, NAME, RECONCILE_SCOPES,  # noqa: F401
                                         RECOVER_EVENTS, STATES, Reconcile, Statuses, clone_host,
                                         clone_url, head_is_fork, synthesize_push)

TITLE = "GitHub"
SIGNATURE_HEADER = "X-Hub-Signature-256"
SECRET_HEADERS = (SIGNATURE_HEADER, "X-Hub-Signature")
#: Header names the stored copy of a delivery keeps (identification only).
KEEP_PREFIXES = ("x-github-",)
#: The event `cibridge send` names when it is given none.
DEFAULT_EVENT = "push"
#: Where commit statuses go when a source's `report:` names no api_url (GHES: https://HOST/api/v3).
API_URL = "https://api.github.com"
#: The user name a clone token goes with in an https clone URL.
CLONE_USER = "x-access-token"

#: GitHub stops listing commits in a push payload at 2,048 (FACTS.md).
COMMIT_CAP = 2048
#: Pushes from github.com keep the content key they always had (no host in it).
PUBLIC_HOST = "github.com"

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


def verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes]) -> None:
    """Raise `VerificationFailed` unless `X-Hub-Signature-256` is HMAC-SHA256(secret, body) for
    one of `secrets` (several during a rotation). Messages name the header, never a value."""
    header = headers.get(SIGNATURE_HEADER)
    if not header:
        if headers.get("X-Hub-Signature"):
            raise VerificationFailed(
                f"{SIGNATURE_HEADER} is missing; the SHA-1 X-Hub-Signature alone is not accepted")
        raise VerificationFailed(f"{SIGNATURE_HEADER} is missing")
    match = _SIGNATURE.fullmatch(header) if isinstance(header, str) else None
    if match is None:
        raise VerificationFailed(f"{SIGNATURE_HEADER} is malformed: expected 'sha256=' and 64 hex digits")
    if not signed_by_one_of(body, secrets, match.group(1)):
        raise VerificationFailed(f"{SIGNATURE_HEADER} does not match the body")


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """GitHub's delivery GUID; a manual redelivery keeps it."""
    return headers.get(DELIVERY_HEADER) or None


def event_name(headers: Mapping[str, str]) -> str:
    return headers.get(EVENT_HEADER, "")


def normalize(headers: Mapping[str, str], body: bytes, *, source: str, delivery_id: str) -> Event | Ignored:
    """The delivery as an `Event` (push) or `Ignored(reason)`; `BadPayload` for a broken push."""
    name = event_name(headers)
    if not name:
        raise BadPayload(f"{EVENT_HEADER} header is missing")
    handler = HANDLERS.get(name)
    if handler is None:
        return Ignored(f"event '{name}' is not handled", event_name=name)
    return handler(headers, body, source=source, delivery_id=delivery_id)


def _ping(headers, body, *, source, delivery_id) -> Ignored:
    return Ignored("ping", event_name="ping")


def _push(headers, body, *, source, delivery_id) -> Event | Ignored:
    payload = b.parse_json(body, headers.get("Content-Type"), form_field="payload")
    ref = b.ref(payload)   # git's ref-name rules, or 400
    if ref.startswith("refs/heads/"):
        ref_name = ref[len("refs/heads/"):]
    elif ref.startswith("refs/tags/"):
        ref_name = ref[len("refs/tags/"):]
    else:
        return Ignored(f"ref '{ref}' is neither a branch nor a tag", event_name="push")
    before = b.sha(payload, "before")
    after = b.sha(payload, "after", required=True)
    created = b.field(payload, "created", bool, default=False) or before == ZERO_SHA
    deleted = b.field(payload, "deleted", bool, default=False) or after == ZERO_SHA
    commits = b.commits(payload)
    repo = b.field(payload, "repository.full_name", str, required=True)
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise BadPayload(f"push payload field 'repository.full_name' is not owner/name: {repo[:100]!r}")
    clone_urls = (b.field(payload, "repository.clone_url", str), b.field(payload, "repository.ssh_url", str))
    return Event(
        provider=NAME,
        source=source,
        delivery_id=delivery_id,
        kind="delete" if deleted else "tag" if ref.startswith("refs/tags/") else "push",
        repo=repo,                                        # repository.full_name
        ref=ref,                                          # ref, always full
        ref_name=ref_name,
        before=before,                                    # before
        after=after,                                      # after: the tag object for annotated tags
        # head_commit.id: the commit; a deletion has none (head_commit null, after all zeros)
        sha=None if deleted else b.sha(payload, "head_commit.id", default=after),
        created=created,                                  # created, or before all zeros
        deleted=deleted,                                  # deleted, or after all zeros
        # forced; old deliveries also set it on creates and deletes, which rewrite nothing
        forced=b.field(payload, "forced", bool, default=False) and not (created or deleted),
        commits=commits,                                  # commits[] with added/modified/removed
        commits_complete=len(commits) < COMMIT_CAP,       # GitHub lists at most 2,048
        pusher=b.field(payload, "pusher.name", str, default=""),   # pusher.name
        default_branch=(b.field(payload, "repository.default_branch", str)       # repository.default_branch,
                        or b.field(payload, "repository.master_branch", str, default="")),  # older hooks
        clone_urls=tuple(url for url in clone_urls if url),   # repository.clone_url, ssh_url
        head_message=b.field(payload, "head_commit.message", str, default=""),  # head_commit.message
        repo_case_insensitive=True,                       # GitHub's Acme/API is acme/api
    )


def _pull_request(headers, body, *, source, delivery_id) -> Event:
    """`pull_request`: every action, in GitHub Actions' words (they are GitHub's own)."""
    payload = b.parse_json(body, headers.get("Content-Type"), form_field="payload")
    what = "pull_request payload"
    action = b.field(payload, "action", str, required=True, what=what)
    n = pulls.number(payload, "pull_request.number", what=what)
    head_sha = b.sha(payload, "pull_request.head.sha", required=True, what=what)
    return pulls.event(
        provider=NAME, source=source, delivery_id=delivery_id, kind="pull_request",
        repo_case_insensitive=True,                               # GitHub's Acme/API is acme/api
        repo=_full_name(payload, what),                           # repository.full_name (the base)
        number=n,                                                 # pull_request.number
        action=action, host_action=action,                        # action
        head_sha=head_sha,                                        # pull_request.head.sha
        # before/after: only `synchronize` carries them (the old and new head)
        before=b.sha(payload, "before", what=what) if action == "synchronize" else "",
        base_ref=pulls.branch(payload, "pull_request.base.ref", what=what),    # pull_request.base.ref
        head_ref=pulls.branch(payload, "pull_request.head.ref", what=what),    # pull_request.head.ref
        # pull_request.head.repo.full_name: null once the fork is deleted
        head_repo=b.field(payload, "pull_request.head.repo.full_name", str, default="", what=what),
        fork=head_is_fork(payload, what),
        merged=bool(b.field(payload, "pull_request.merged", bool, default=False, what=what)),
        draft=bool(b.field(payload, "pull_request.draft", bool, default=False, what=what)),
        author=b.field(payload, "pull_request.user.login", str, default="", what=what),
        author_association=b.field(payload, "pull_request.author_association", str, default="", what=what),
        updated_at=b.field(payload, "pull_request.updated_at", str, default="", what=what),
        pusher=b.field(payload, "sender.login", str, default="", what=what),
        default_branch=b.field(payload, "repository.default_branch", str, default="", what=what),
        clone_urls=(b.field(payload, "repository.clone_url", str, what=what),
                    b.field(payload, "repository.ssh_url", str, what=what)),
    )


def _issue_comment(headers, body, *, source, delivery_id) -> Event | Ignored:
    """`issue_comment` on a pull request (an issue with a `pull_request` key); GitHub sends no
    head commit with it: the dispatcher asks the API (`GET /repos/{repo}/pulls/{number}`)."""
    payload = b.parse_json(body, headers.get("Content-Type"), form_field="payload")
    what = "issue_comment payload"
    if b.field(payload, "issue.pull_request", dict, what=what) is None:
        return Ignored("a comment on an issue, not on a pull request", event_name="issue_comment")
    action = b.field(payload, "action", str, required=True, what=what)
    comment_id = b.field(payload, "comment.id", int, required=True, what=what)
    return pulls.event(
        provider=NAME, source=source, delivery_id=delivery_id, kind="comment",
        repo_case_insensitive=True,                               # GitHub's Acme/API is acme/api
        repo=_full_name(payload, what), number=pulls.number(payload, "issue.number", what=what),
        action=action, host_action=action, head_sha="",
        comment=b.field(payload, "comment.body", str, default="", what=what),
        comment_id=str(comment_id),
        author=b.field(payload, "comment.user.login", str, default="", what=what),
        author_association=b.field(payload, "comment.author_association", str, default="", what=what),
        updated_at=b.field(payload, "comment.updated_at", str, default="", what=what),
        pusher=b.field(payload, "sender.login", str, default="", what=what),
        default_branch=b.field(payload, "repository.default_branch", str, default="", what=what),
        clone_urls=(b.field(payload, "repository.clone_url", str, what=what),
                    b.field(payload, "repository.ssh_url", str, what=what)),
    )


def _full_name(payload: dict, what: str) -> str:
    repo = b.field(payload, "repository.full_name", str, required=True, what=what)
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise BadPayload(f"{what} field 'repository.full_name' is not owner/name: {repo[:100]!r}")
    return repo


HANDLERS = {
    "push": _push,
    "ping": _ping,
    "pull_request": _pull_request,
    "issue_comment": _issue_comment,
}


# --- what else GitHub means: signing, clone rules, commit statuses -------------------------------

def signature(body: bytes, secret: bytes) -> dict[str, str]:
    """The header GitHub signs `body` with: HMAC-SHA256 under `secret`."""
    digest = hex_digest(secret, body)
    return {SIGNATURE_HEADER: f"sha256={digest}"}


def sign(body: bytes, secret: bytes, *, event: str | None = None, delivery: str) -> dict[str, str]:
    """The headers GitHub would send with `body` (for `cibridge send`)."""
    return {"Content-Type": "application/json", EVENT_HEADER: event or DEFAULT_EVENT,
            DELIVERY_HEADER: delivery, **signature(body, secret), "User-Agent": "bridge-send"}
