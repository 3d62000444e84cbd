"""Bitbucket Cloud provider: checks `X-Hub-Signature: sha256=<hex>` over the raw body, then turns
a `repo:push` delivery into one `Event` per entry of `push.changes` (none: `Ignored`), and
`pullrequest:created/updated/fulfilled/rejected` and `pullrequest:comment_created` into a pull
request or comment `Event`; every other event key is `Ignored`. Also all else Bitbucket means: its build-status client, signing
(for `cibridge send`), API URL, headers and clone rules.

Input: request headers and the raw body bytes. Output: a tuple of `Event`s | `Ignored`
(`normalize_all`), or `VerificationFailed` (401) / `BadPayload` (400).
"""
from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from bridge.errors import BadPayload, StatusRejected, StatusUnavailable, VerificationFailed
from bridge.events import ZERO_SHA, Commit, Event, Ignored
from bridge.providers import body as b
from bridge.providers import pulls
from bridge.providers.hmacsig import hex_digest, signed_by_one_of
from bridge.providers.status import Answer, StatusClient, cap

NAME = "bitbucket"
TITLE = "Bitbucket Cloud"
SIGNATURE_HEADER = "X-Hub-Signature"          # sha256 digest under the SHA-1-era name
SECRET_HEADERS = (SIGNATURE_HEADER,)
EVENT_HEADER = "X-Event-Key"
DELIVERY_HEADER = "X-Request-UUID"
KEEP_PREFIXES = ("x-event-key", "x-request-uuid", "x-hook-uuid", "x-attempt-number")
DEFAULT_EVENT = "repo:push"
API_URL = "https://api.bitbucket.org/2.0"
#: The user name a repository, project or workspace access token goes with over https.
CLONE_USER = "x-token-auth"
#: The payload says whether it cut the list (`truncated`): no fixed cap to distrust.
COMMIT_CAP = None
PUBLIC_HOST = None
#: Separates a delivery's id from the number of its second and later events (`<id>+2`).
EVENT_SEPARATOR = "+"

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_REF_PREFIX = {"branch": "refs/heads/", "tag": "refs/tags/"}


def verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes]) -> None:
    """Raise `VerificationFailed` unless `X-Hub-Signature` is `sha256=` HMAC-SHA256(secret, body)
    for one of `secrets`. A hook without a secret sends none: refused (sources always have one)."""
    header = headers.get(SIGNATURE_HEADER)
    if not header:
        raise VerificationFailed(f"{SIGNATURE_HEADER} is missing (set a secret on the webhook)")
    match = _SIGNATURE.fullmatch(header) if isinstance(header, str) else None
    if match is None:
        raise VerificationFailed(f"{SIGNATURE_HEADER} is malformed: expected 'sha256=' and 64 hex digits")
    if not signed_by_one_of(body, secrets, match.group(1)):
        raise VerificationFailed(f"{SIGNATURE_HEADER} does not match the body")


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """`X-Request-UUID`: the same on Bitbucket's own retries (X-Attempt-Number counts them)."""
    return headers.get(DELIVERY_HEADER) or None


def event_name(headers: Mapping[str, str]) -> str:
    return headers.get(EVENT_HEADER, "")


def event_id(delivery: str, index: int) -> str:
    """The delivery id the event at `index` (0-based) of a delivery is stored under: the first
    keeps the host's id (so a redelivery is still known), the others `<id>+2`, `<id>+3`..."""
    return delivery if index == 0 else f"{delivery}{EVENT_SEPARATOR}{index + 1}"


def normalize_all(headers: Mapping[str, str], body: bytes, *, source: str,
                  delivery_id: str) -> tuple[Event, ...] | Ignored:
    """Every branch or tag change of a `repo:push`, in the payload's order, as an `Event`; the
    event at index i gets the delivery id `event_id(delivery_id, i)`."""
    name = event_name(headers)
    if not name:
        raise BadPayload(f"{EVENT_HEADER} header is missing")
    if name in PULL_KEYS or name == COMMENT_KEY:
        payload = b.parse_json(body)
        if name == COMMENT_KEY:
            return (_pull_event(payload, name, "comment", source=source, delivery_id=delivery_id),)
        return (_pull_event(payload, name, "pull_request", source=source, delivery_id=delivery_id),)
    if name != "repo:push":
        return Ignored(f"event '{name}' is not handled", event_name=name)
    payload = b.parse_json(body)
    changes = b.field(payload, "push.changes", list, required=True)
    repo = b.field(payload, "repository.full_name", str, required=True)
    if repo.count("/") != 1 or repo.startswith("/") or repo.endswith("/"):
        raise BadPayload(f"push payload field 'repository.full_name' is not workspace/slug: {repo[:100]!r}")
    events: list[Event] = []
    skipped = []
    for i, change in enumerate(changes):
        if not isinstance(change, dict):
            raise BadPayload(f"push payload push.changes[{i}] is not an object")
        event = _change(payload, change, i, repo, source=source,
                        delivery_id=event_id(delivery_id, len(events)))
        if isinstance(event, str):
            skipped.append(event)
        else:
            events.append(event)
    if not events:
        reason = "; ".join(skipped) if skipped else "the push lists no changes"
        return Ignored(reason, event_name=name)
    return tuple(events)


def normalize(headers: Mapping[str, str], body: bytes, *, source: str, delivery_id: str) -> Event | Ignored:
    """One event: the one stored under `delivery_id` (`<id>+N` is the Nth change), for callers
    that handle one event per delivery row (`cibridge replay`)."""
    base, sep, number = delivery_id.rpartition(EVENT_SEPARATOR)
    index = int(number) - 1 if sep and number.isdigit() and int(number) >= 2 else 0
    if index == 0:
        base = delivery_id
    result = normalize_all(headers, body, source=source, delivery_id=base)
    if isinstance(result, Ignored):
        return result
    if index >= len(result):
        return Ignored(f"the delivery has no change number {index + 1}", event_name=event_name(headers))
    return result[index]


def _change(payload: dict, change: dict, i: int, repo: str, *, source: str,
            delivery_id: str) -> Event | str:
    """One change as an Event, or why it is not one (a string)."""
    where = f"push payload push.changes[{i}]"
    old, new = change.get("old"), change.get("new")
    if (old is not None and not isinstance(old, dict)) or (new is not None and not isinstance(new, dict)):
        raise BadPayload(f"{where} 'old' or 'new' is not an object")
    side = new if new is not None else old
    if side is None:
        return f"change {i + 1} has neither 'old' nor 'new'"
    kind = b.field(side, "type", str, required=True, what=where)
    name = b.field(side, "name", str, required=True, what=where)
    if kind not in _REF_PREFIX:
        return f"change {i + 1} is a {kind}, neither a branch nor a tag"
    ref = b.ref({"ref": _REF_PREFIX[kind] + name}, what=where)
    before = b.sha(old, "target.hash", required=True, what=where) if old is not None else ZERO_SHA
    after = b.sha(new, "target.hash", required=True, what=where) if new is not None else ZERO_SHA
    deleted = new is None
    commits = _commits(change, where)
    return Event(
        provider=NAME, source=source, delivery_id=delivery_id,
        kind="delete" if deleted else "tag" if kind == "tag" else "push",
        repo=repo,                                            # repository.full_name
        ref=ref, ref_name=name,                               # new/old .type + .name
        before=before, after=after,                           # old/new .target.hash; null: zeros
        sha=None if deleted else after,                       # new.target: the commit, also for tags
        created=old is None,                                  # old null (also `created`)
        deleted=deleted,                                      # new null (also `closed`)
        forced=b.field(change, "forced", bool, default=False, what=where) and old is not None and not deleted,
        commits=commits,                                      # commits[]: at most 5, newest first
        # `truncated` when more were pushed; no commits listed says nothing either
        commits_complete=bool(commits) and not b.field(change, "truncated", bool, default=False, what=where),
        pusher=(b.field(payload, "actor.nickname", str) or b.field(payload, "actor.username", str)
                or b.field(payload, "actor.display_name", str, default="")),
        default_branch=b.field(payload, "repository.mainbranch.name", str, default=""),
        clone_urls=_clone_urls(payload),
        head_message=b.field(new, "target.message", str, default="", what=where) if new else "",
        repo_case_insensitive=True,                           # workspace and slug ignore case
    )


#: Bitbucket's pull request event keys -> GitHub Actions' words. `updated` comes for new commits
#: and for edits alike (the payload does not say which): taken as `synchronize`, so a rebuild
#: may follow a title edit (the content key still dedupes a resend of the same change).
PULL_KEYS = {"pullrequest:created": "opened", "pullrequest:updated": "synchronize",
             "pullrequest:fulfilled": "closed", "pullrequest:rejected": "closed"}
COMMENT_KEY = "pullrequest:comment_created"
#: Bitbucket writes pull requests' commit hashes abbreviated (12 digits observed: BCLOUD-21201).
_HASH = re.compile(r"[0-9a-f]{7,40}")


def _hash(obj: dict, path: str, what: str) -> str:
    value = b.field(obj, path, str, required=True, what=what)
    if not _HASH.fullmatch(value):
        raise BadPayload(f"{what} field '{path}' is not a commit hash")
    return value


def _pull_event(payload: dict, key: str, kind: str, *, source: str, delivery_id: str) -> Event:
    """`pullrequest:*` as a pull request event, `pullrequest:comment_created` as a comment.
    Bitbucket Cloud serves no pull ref: `ref` is the source branch (fetchable from the base
    repository unless the pull request comes from a fork)."""
    what = f"{key} payload"
    pr = b.field(payload, "pullrequest", dict, required=True, what=what)
    repo = b.field(payload, "repository.full_name", str, required=True, what=what)
    head_ref = pulls.branch(pr, "source.branch.name", what=what)
    head_repo = b.field(pr, "source.repository.full_name", str, default="", what=what)
    fields = dict(
        provider=NAME, source=source, delivery_id=delivery_id, kind=kind, repo=repo,
        number=pulls.number(pr, "id", what=what),                        # pullrequest.id
        ref="refs/heads/" + head_ref,                                    # the source branch
        head_sha=_hash(pr, "source.commit.hash", what),                  # abbreviated
        base_ref=pulls.branch(pr, "destination.branch.name", what=what),
        head_ref=head_ref, head_repo=head_repo, fork=_pull_fork(pr, what),
        draft=bool(b.field(pr, "draft", bool, default=False, what=what)),
        pusher=_actor(payload), default_branch=b.field(payload, "repository.mainbranch.name", str,
                                                       default="", what=what),
        clone_urls=_clone_urls(payload), author_association="", repo_case_insensitive=True)
    if kind == "comment":
        comment = b.field(payload, "comment", dict, required=True, what=what)
        return pulls.event(**fields, action="created", host_action=key,
                           comment=b.field(comment, "content.raw", str, default="", what=what),
                           comment_id=str(b.field(comment, "id", int, required=True, what=what)),
                           author=_actor(payload),
                           updated_at=b.field(comment, "updated_on", str, default="", what=what))
    return pulls.event(
        **fields, action=PULL_KEYS[key], host_action=key,
        merged=key == "pullrequest:fulfilled" or pr.get("state") == "MERGED",
        author=(b.field(pr, "author.nickname", str, what=what)
                or b.field(pr, "author.display_name", str, default="", what=what)),
        updated_at=b.field(pr, "updated_on", str, default="", what=what))


def _pull_fork(pr: dict, what: str) -> bool:
    """From another repository: source.repository is not destination.repository (uuid, else
    full_name)."""
    source = b.field(pr, "source.repository", dict, what=what)
    target = b.field(pr, "destination.repository", dict, default={}, what=what)
    if source is None:
        return True
    if source.get("uuid") and target.get("uuid"):
        return source["uuid"] != target["uuid"]
    return str(source.get("full_name", "")).lower() != str(target.get("full_name", "")).lower()


def _actor(payload: dict) -> str:
    return (b.field(payload, "actor.nickname", str) or b.field(payload, "actor.username", str)
            or b.field(payload, "actor.display_name", str, default=""))


def _commits(change: dict, where: str) -> tuple[Commit, ...]:
    items = b.field(change, "commits", list, default=[], what=where)
    out = []
    for j, item in enumerate(items):
        at = f"{where} commits[{j}]"
        if not isinstance(item, dict):
            raise BadPayload(f"{at} is not an object")
        raw = b.field(item, "author.raw", str, default="", what=at)
        out.append(Commit(
            id=b.sha(item, "hash", required=True, what=at),
            message=b.field(item, "message", str, default="", what=at),
            author=b.field(item, "author.user.display_name", str, default="", what=at)
            or raw.split("<", 1)[0].strip(),
            timestamp=b.field(item, "date", str, default="", what=at),
            has_files=False,                                  # Bitbucket sends no file lists
        ))
    return tuple(out)


def _clone_urls(payload: dict) -> tuple[str, ...]:
    """The https clone URL: the repository's html link plus `.git`."""
    html = b.field(payload, "repository.links.html.href", str, default="")
    return (html.rstrip("/") + ".git",) if html.startswith("https://") else ()


# --- what else Bitbucket means: signing, clone rules, build statuses ------------------------------

def signature(body: bytes, secret: bytes) -> dict[str, str]:
    """The header Bitbucket signs `body` with: `sha256=` HMAC-SHA256 under `secret`."""
    return {SIGNATURE_HEADER: "sha256=" + hex_digest(secret, body)}


def sign(body: bytes, secret: bytes, *, event: str | None = None, delivery: str) -> dict[str, str]:
    """The headers Bitbucket would send with `body` (for `cibridge send`)."""
    return {"Content-Type": "application/json", EVENT_HEADER: event or DEFAULT_EVENT,
            DELIVERY_HEADER: delivery, "X-Attempt-Number": "1", **signature(body, secret),
            "User-Agent": "bridge-send"}


def clone_host(api_host: str) -> str:
    """api.bitbucket.org serves bitbucket.org."""
    return api_host[len("api."):] if api_host.startswith("api.") else api_host


#: Our states (a superset) -> Bitbucket's (INPROGRESS, SUCCESSFUL, FAILED, STOPPED).
STATES = {"pending": "INPROGRESS", "running": "INPROGRESS", "success": "SUCCESSFUL",
          "failure": "FAILED", "canceled": "STOPPED", "error": "FAILED"}
#: Bitbucket requires a url; before a build has one, its commit page (a URL template Bitbucket
#: fills in when it shows the status).
COMMIT_PAGE = "https://bitbucket.org/{repository.full_name}/commits/{commit.hash}"


class Statuses(StatusClient):
    """POST {api_url}/repositories/{workspace}/{repo_slug}/commit/{sha}/statuses/build; the
    same `key` (the rule's context) overwrites. A token `user:app-password` goes as basic auth,
    any other as Bearer (repository, project or workspace access token)."""

    provider = NAME
    states = STATES

    def request(self, status):
        body = {"key": status.context[:40], "name": status.context,
                "state": self.states[status.state], "description": cap(status.description),
                "url": status.target_url or COMMIT_PAGE}
        if status.ref:
            body["refname"] = status.ref
        workspace_slug = "/".join(quote(p, safe="") for p in status.repo.split("/", 1))
        headers = {"Accept": "application/json", "User-Agent": "bridge"}
        user, basic, password = self._token.partition(":")      # user:app-password
        if basic:
            headers["Authorization"] = "Basic " + _basic(user, password)
        else:
            headers["Authorization"] = f"Bearer {self._token}"
        return (f"{self.api_url}/repositories/{workspace_slug}/commit/{quote(status.sha, safe='')}"
                "/statuses/build", headers, body)

    def classify(self, resp):
        code = resp.status_code
        if 200 <= code < 300:
            return Answer("sent", code, f"{code}")
        message = _error_message(self, resp)
        if code == 400:                 # a value Bitbucket refuses: posting it again cannot help
            return Answer("done", code, message)
        if code == 429 or code >= 500:
            raise StatusUnavailable(message, code, self._retry_after(resp))
        hint = " (the token may not write build statuses to this repository)" \
            if code in (401, 403, 404) else ""
        raise StatusRejected(message + hint, code)


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")


def _error_message(client: StatusClient, resp) -> str:
    """Bitbucket's errors say `{"type": "error", "error": {"message": ...}}`."""
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        text = cap(error["message"].replace(client._token, "***"), 300)
        return f"{resp.status_code} {text}"
    return client._message(resp)
