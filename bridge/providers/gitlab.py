"""GitLab provider: checks the plain `X-Gitlab-Token` or the signing token's Standard Webhooks
signature (`webhook-signature`, 5-minute window), as the source's `accept:` says, then turns
`Push Hook`, `Tag Push Hook`, `Merge Request Hook`, `Note Hook` and their System Hook forms into
an `Event`; everything else is `Ignored`. Also signing for `cibridge send`, API URL, headers and
clone rules; its REST API (commit statuses, reconcile's listings) is `gitlab_api.py`, exposed here.

Input: request headers and the raw body bytes. Output: `Event` | `Ignored`, or
`VerificationFailed` (401) / `BadPayload` (400).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from bridge.errors import BadPayload, VerificationFailed
from bridge.events import ZERO_SHA, Event, Ignored
from bridge.providers import body as b
from bridge.providers import pulls
# The host's REST API (statuses, reconcile's listings) lives beside it; this module is its face.
from bridge.providers.gitlab_api import (EVENT_HEADER, NAME, RECONCILE_SCOPES, RECOVER_EVENTS, STATES,  # noqa: F401
                                         TOKEN_HEADER, Reconcile, Statuses, clone_host, clone_url,
                                         synthesize_push)

TITLE = "GitLab"
#: The signing token's Standard Webhooks headers (https://www.standardwebhooks.com).
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
SECRET_HEADERS = (TOKEN_HEADER, SIGNATURE_HEADER)
#: Header names the stored copy of a delivery keeps (identification only).
KEEP_PREFIXES = ("x-gitlab-", ID_HEADER, TIMESTAMP_HEADER)
#: What a source's `accept:` may name: the plain secret token, the signing token's signature.
ACCEPT = ("token", "signature")
DEFAULT_ACCEPT = ("token",)
#: A signing token: `whsec_` and the base64 of the key.
SIGNING_PREFIX = "whsec_"
#: How far `webhook-timestamp` may be from now, either way (replay protection).
SIGNATURE_WINDOW = 300
#: The event `cibridge send` names when it is given none.
DEFAULT_EVENT = "Push Hook"
#: Where commit statuses go when a source's `report:` names no api_url.
API_URL = "https://gitlab.com/api/v4"
#: The user name a clone token goes with in an https clone URL.
CLONE_USER = "oauth2"
#: GitLab's payload says how many commits were pushed (`total_commits_count`): no fixed cap.
COMMIT_CAP = None
#: Pushes from gitlab.com keep the content key they always had (no host in it).
PUBLIC_HOST = "gitlab.com"


def verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes], *,
           accept: Sequence[str] = DEFAULT_ACCEPT, now=time.time) -> None:
    """Raise `VerificationFailed` unless the delivery is authenticated the way `accept` allows:
    `token`, `X-Gitlab-Token` equal to one of `secrets`; `signature`, a `webhook-signature` over
    `id.timestamp.body` under one of the `whsec_` secrets, its timestamp within 5 minutes of
    `now()`. With both (a rotation), either will do. Messages name the header, never a value."""
    if "signature" in accept and (headers.get(SIGNATURE_HEADER) or "token" not in accept):
        if "token" in accept and headers.get(TOKEN_HEADER):
            try:
                return _verify_signature(headers, body, secrets, now())
            except VerificationFailed:
                return _verify_token(headers, secrets)
        return _verify_signature(headers, body, secrets, now())
    return _verify_token(headers, secrets)


def _verify_token(headers: Mapping[str, str], secrets: Sequence[bytes]) -> None:
    token = headers.get(TOKEN_HEADER)
    if not token:
        raise VerificationFailed(f"{TOKEN_HEADER} is missing")
    try:
        # WSGI hands header values over as latin-1 text; this gets the bytes GitLab sent back.
        given = token.encode("latin-1")
    except (UnicodeEncodeError, AttributeError):
        raise VerificationFailed(f"{TOKEN_HEADER} is malformed") from None
    for secret in secrets:
        if hmac.compare_digest(secret, given):
            return
    raise VerificationFailed(f"{TOKEN_HEADER} does not match")


def signing_key(secret: bytes) -> bytes | None:
    """The HMAC key of a `whsec_<base64>` signing token, or None when `secret` is not one."""
    if not secret.startswith(SIGNING_PREFIX.encode()):
        return None
    try:
        key = base64.b64decode(secret[len(SIGNING_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return None
    return key or None


def _verify_signature(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes],
                      now: float) -> None:
    for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        if not headers.get(name):
            raise VerificationFailed(f"{name} is missing")
    msg_id, stamp = headers[ID_HEADER], headers[TIMESTAMP_HEADER]
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise VerificationFailed(f"{TIMESTAMP_HEADER} is malformed: expected Unix seconds")
    if abs(now - int(stamp)) > SIGNATURE_WINDOW:
        raise VerificationFailed(f"{TIMESTAMP_HEADER} is more than {SIGNATURE_WINDOW // 60} minutes "
                                 "from the bridge's clock (an old delivery replayed, or a clock off)")
    try:
        signed = msg_id.encode("latin-1") + b"." + stamp.encode("ascii") + b"." + body
    except UnicodeEncodeError:
        raise VerificationFailed(f"{ID_HEADER} is malformed") from None
    given = [part[3:].encode("ascii") for part in headers[SIGNATURE_HEADER].split()
             if part.startswith("v1,") and part.isascii()]
    if not given:
        raise VerificationFailed(f"{SIGNATURE_HEADER} is malformed: expected 'v1,' and base64")
    keys = [k for k in map(signing_key, secrets) if k]
    if not keys:
        raise VerificationFailed(f"{SIGNATURE_HEADER} cannot be checked: the source has no "
                                 f"{SIGNING_PREFIX} signing token")
    for key in keys:
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
        # Every candidate compared, in constant time each (several during a key rotation).
        if any(hmac.compare_digest(expected, candidate) for candidate in given):
            return
    raise VerificationFailed(f"{SIGNATURE_HEADER} does not match the body")


def accept_problem(accept: Sequence[str], secrets: Sequence[bytes] | None) -> str | None:
    """What is wrong with a source's `accept:` and its resolved `secrets` (None: not resolved)."""
    wrong = [a for a in accept if a not in ACCEPT]
    if wrong or not accept:
        return f"accept must name token, signature or both, not {', '.join(map(str, wrong)) or 'nothing'}"
    if "signature" in accept and secrets is not None and not any(map(signing_key, secrets)):
        return (f"accept: signature needs a signing token among the secrets ({SIGNING_PREFIX} and "
                "base64, as GitLab shows it)")
    return None


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """`Idempotency-Key` stays the same across GitLab's retries (17.4+), and a signed delivery's
    `webhook-id` equals it; the event UUID (14.8+) is the fallback."""
    return (headers.get(ID_HEADER) or headers.get("Idempotency-Key")
            or headers.get("X-Gitlab-Event-UUID") or None)


def event_name(headers: Mapping[str, str]) -> str:
    return headers.get(EVENT_HEADER, "")


def normalize(headers: Mapping[str, str], body: bytes, *, source: str, delivery_id: str) -> Event | Ignored:
    """The delivery as an `Event` (branch or tag push) or `Ignored(reason)`."""
    name = event_name(headers)
    if not name:
        raise BadPayload(f"{EVENT_HEADER} header is missing")
    handler = HANDLERS.get(name)
    if handler is None:
        return Ignored(f"event '{name}' is not handled", event_name=name)
    return handler(b.parse_json(body), name, source=source, delivery_id=delivery_id)


def _system_hook(payload: dict, name: str, *, source: str, delivery_id: str) -> Event | Ignored:
    # `event_name` decides: GitLab's push data builder sends `object_kind` and `event_name` both
    # (only the docs' example lacks object_kind); merge requests and the like carry object_kind
    # alone, and repository_update follows every push without being one.
    kind = b.field(payload, "event_name", str, default="", what="system hook payload")
    if kind in ("push", "tag_push"):
        return _push(payload, name, source=source, delivery_id=delivery_id)
    if not kind and payload.get("object_kind") == "merge_request":
        return _merge_request(payload, name, source=source, delivery_id=delivery_id)
    if kind == "repository_update":
        return Ignored("system hook 'repository_update' is not a push (its push event is)", event_name=name)
    return Ignored(f"system hook event '{kind or payload.get('object_kind')}' is not handled", event_name=name)


def _push(payload: dict, name: str, *, source: str, delivery_id: str) -> Event | Ignored:
    ref = b.ref(payload)   # git's ref-name rules, or 400
    if ref.startswith("refs/heads/"):
        ref_name = ref[len("refs/heads/"):]
    elif ref.startswith("refs/tags/"):
        ref_name = ref[len("refs/tags/"):]
    else:
        return Ignored(f"ref '{ref}' is neither a branch nor a tag", event_name=name)
    before = b.sha(payload, "before")
    after = b.sha(payload, "after", required=True)
    deleted = after == ZERO_SHA
    # checkout_sha: the commit (for an annotated tag, not the tag object); null on deletions
    sha = None if deleted else b.sha(payload, "checkout_sha", default=after)
    commits = b.commits(payload)
    total = b.field(payload, "total_commits_count", int, default=len(commits))
    head = next((c for c in commits if c.id == sha), commits[-1] if commits else None)
    return Event(
        provider=NAME,
        source=source,
        delivery_id=delivery_id,
        kind="delete" if deleted else "tag" if ref.startswith("refs/tags/") else "push",
        repo=_repo(payload),                                  # project.path_with_namespace
        ref=ref,                                              # ref (always full)
        ref_name=ref_name,
        before=before,                                        # before
        after=after,                                          # after (tag object for annotated tags)
        sha=sha,                                              # checkout_sha; None on deletions
        created=before == ZERO_SHA,                           # GitLab has no flag: before all zeros
        deleted=deleted,                                      # after all zeros
        commits=commits,                                      # commits[]: the newest 20 at most
        commits_complete=len(commits) >= total,               # total_commits_count is the real count
        pusher=(b.field(payload, "user_username", str)        # user_username (System Hooks: user_name)
                or b.field(payload, "user_name", str, default="")),
        default_branch=b.field(payload, "project.default_branch", str, default=""),  # project.default_branch
        clone_urls=tuple(url for url in (                     # project.git_http_url, git_ssh_url
            b.field(payload, "project.git_http_url", str)
            or b.field(payload, "repository.git_http_url", str),
            b.field(payload, "project.git_ssh_url", str)
            or b.field(payload, "repository.git_ssh_url", str)) if url),
        head_message=head.message if head else "",            # message of the commit at checkout_sha
        repo_case_insensitive=True,                           # GitLab paths ignore case
    )


def _repo(payload: dict) -> str:
    path = b.field(payload, "project.path_with_namespace", str)
    if path:
        return path
    # Payloads without a project object still name the repository's home page.
    homepage = b.field(payload, "repository.homepage", str, default="")
    try:
        path = urlsplit(homepage).path.strip("/")
    except ValueError:
        raise BadPayload("push payload field 'repository.homepage' is not a URL") from None
    if not path:
        raise BadPayload("push payload has no 'project.path_with_namespace'")
    return path


#: Where GitLab serves a merge request's head, in the target project.
PULL_REF = "refs/merge-requests/{n}/head"
#: GitLab's merge request actions -> GitHub Actions' words (`update` depends on `oldrev`).
MR_ACTIONS = {"open": "opened", "reopen": "reopened", "close": "closed", "merge": "closed",
              "approved": "approved", "approval": "approved", "unapproved": "unapproved",
              "unapproval": "unapproved"}
#: A System Hook from before actions were sent: the state says what happened.
MR_STATES = {"opened": "opened", "closed": "closed", "merged": "closed", "locked": "locked"}


def _mr_action(payload: dict, attrs: dict, what: str) -> str:
    host = b.field(attrs, "action", str, default="", what=what)
    if host == "update":
        # oldrev is there only when the code changed: new commits, not a title or label edit
        if attrs.get("oldrev"):
            return "synchronize"
        # `changes.draft` {previous, current} when the draft state was toggled: GitHub's words
        changes = payload.get("changes")
        draft = changes.get("draft") if isinstance(changes, dict) else None
        if isinstance(draft, dict) and isinstance(draft.get("current"), bool):
            return "converted_to_draft" if draft["current"] else "ready_for_review"
        return "edited"
    if host:
        return MR_ACTIONS.get(host, host)
    return MR_STATES.get(b.field(attrs, "state", str, default="", what=what), "")


def _merge_request(payload: dict, name: str, *, source: str, delivery_id: str) -> Event:
    """`Merge Request Hook` (project hook or System Hook): repo is the target project."""
    what = "merge request payload"
    attrs = b.field(payload, "object_attributes", dict, required=True, what=what)
    action = _mr_action(payload, attrs, what)
    host_action = b.field(attrs, "action", str, default="", what=what)
    merged = host_action == "merge" or attrs.get("state") == "merged"
    return pulls.event(
        provider=NAME, source=source, delivery_id=delivery_id, kind="pull_request", pull_ref=PULL_REF,
        repo_case_insensitive=True,                               # GitLab paths ignore case
        # object_attributes.target.path_with_namespace; project (the hook's project) otherwise
        repo=(b.field(attrs, "target.path_with_namespace", str, what=what) or _repo(payload)),
        number=pulls.number(attrs, "iid", what=what),                     # object_attributes.iid
        action=action, host_action=host_action,
        head_sha=b.sha(attrs, "last_commit.id", required=True, what=what),   # last_commit.id
        before=b.sha(attrs, "oldrev", what=what),                         # oldrev: the old head
        base_ref=pulls.branch(attrs, "target_branch", what=what),         # target_branch
        head_ref=pulls.branch(attrs, "source_branch", what=what),         # source_branch
        head_repo=b.field(attrs, "source.path_with_namespace", str, default="", what=what),
        fork=_mr_fork(attrs, what),
        merged=merged,
        # draft (GitLab 13.2+); work_in_progress before it
        draft=bool(b.field(attrs, "draft", bool, what=what)
                   or b.field(attrs, "work_in_progress", bool, default=False, what=what)),
        author=b.field(payload, "user.username", str, default="", what=what),   # who acted
        author_association="",                                            # GitLab sends no role
        updated_at=b.field(attrs, "updated_at", str, default="", what=what),
        pusher=b.field(payload, "user.username", str, default="", what=what),
        default_branch=(b.field(attrs, "target.default_branch", str, what=what)
                        or b.field(payload, "project.default_branch", str, default="", what=what)),
        clone_urls=(b.field(attrs, "target.git_http_url", str, what=what)
                    or b.field(payload, "project.git_http_url", str, what=what),
                    b.field(attrs, "target.git_ssh_url", str, what=what)
                    or b.field(payload, "project.git_ssh_url", str, what=what)),
        head_message=b.field(attrs, "last_commit.message", str, default="", what=what),
    )


def _mr_fork(attrs: dict, what: str) -> bool:
    """From another project: source_project_id is not target_project_id (by id, else path)."""
    source = b.field(attrs, "source_project_id", int, what=what)
    target = b.field(attrs, "target_project_id", int, what=what)
    if source is not None and target is not None:
        return source != target
    return (b.field(attrs, "source.path_with_namespace", str, default="", what=what).lower()
            != b.field(attrs, "target.path_with_namespace", str, default="", what=what).lower())


def _note(payload: dict, name: str, *, source: str, delivery_id: str) -> Event | Ignored:
    """`Note Hook` on a merge request: a comment, with the merge request (and its head) in it."""
    what = "note payload"
    attrs = b.field(payload, "object_attributes", dict, required=True, what=what)
    if b.field(attrs, "noteable_type", str, default="", what=what) != "MergeRequest":
        return Ignored("a comment, but not on a merge request", event_name=name)
    mr = b.field(payload, "merge_request", dict, required=True, what=what)
    host_action = b.field(attrs, "action", str, default="", what=what)   # create/update (16.11+)
    return pulls.event(
        provider=NAME, source=source, delivery_id=delivery_id, kind="comment", pull_ref=PULL_REF,
        repo_case_insensitive=True,                               # GitLab paths ignore case
        repo=_repo(payload), number=pulls.number(mr, "iid", what=what),
        action="edited" if host_action == "update" else "created", host_action=host_action,
        head_sha=b.sha(mr, "last_commit.id", what=what),
        base_ref=pulls.branch(mr, "target_branch", what=what, required=False),
        head_ref=pulls.branch(mr, "source_branch", what=what, required=False),
        head_repo=b.field(mr, "source.path_with_namespace", str, default="", what=what),
        fork=_mr_fork(mr, what),
        comment=b.field(attrs, "note", str, default="", what=what),
        comment_id=str(b.field(attrs, "id", int, default="", what=what)),
        author=b.field(payload, "user.username", str, default="", what=what),
        author_association="",
        updated_at=b.field(attrs, "updated_at", str, default="", what=what),
        pusher=b.field(payload, "user.username", str, default="", what=what),
        default_branch=b.field(payload, "project.default_branch", str, default="", what=what),
        clone_urls=(b.field(payload, "project.git_http_url", str, what=what),
                    b.field(payload, "project.git_ssh_url", str, what=what)),
        head_message=b.field(mr, "last_commit.message", str, default="", what=what),
    )


HANDLERS = {
    "Push Hook": _push,
    "Tag Push Hook": _push,
    "System Hook": _system_hook,
    "Merge Request Hook": _merge_request,
    "Note Hook": _note,
}


# --- what else GitLab means: signing, clone rules, commit statuses -------------------------------

def signature(body: bytes, secret: bytes, *, delivery: str | None = None,
              now=time.time) -> dict[str, str]:
    """A plain secret token is sent as it is; a `whsec_` signing token signs `id.timestamp.body`
    in Standard Webhooks form (the id: `delivery`, else a fresh one)."""
    key = signing_key(secret)
    if key is None:
        return {TOKEN_HEADER: secret.decode("utf-8")}
    msg_id = delivery or f"msg_{hashlib.sha256(body).hexdigest()[:24]}"
    stamp = str(int(now()))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode("utf-8") + body, hashlib.sha256).digest()
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: "v1," + base64.b64encode(digest).decode("ascii")}


def sign(body: bytes, secret: bytes, *, event: str | None = None, delivery: str) -> dict[str, str]:
    """The headers GitLab would send with `body` (for `cibridge send`)."""
    return {"Content-Type": "application/json", EVENT_HEADER: event or DEFAULT_EVENT,
            "X-Gitlab-Event-UUID": delivery, "Idempotency-Key": delivery,
            **signature(body, secret, delivery=delivery), "User-Agent": "bridge-send"}
