"""GitHub provider: checks `X-Hub-Signature-256` over the raw body, then turns a `push` delivery
into an `Event`; `ping` and every other event become `Ignored`. Also all else GitHub means: its
commit-status client, its signing (for `cibridge send`), API URL, headers and clone rules.

Input: request headers and the raw body bytes. Output: `Event` | `Ignored`, or
`VerificationFailed` (401) / `BadPayload` (400).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import quote, urlsplit

from bridge.errors import BadPayload, StatusRejected, StatusUnavailable, VerificationFailed
from bridge.events import ZERO_SHA, Event, Ignored
from bridge.policies import MAX_RETRY_AFTER
from bridge.providers import body as b
from bridge.providers import pulls
from bridge.providers.hostapi import HostAPI, HostDelivery, HostRef, next_link
from bridge.providers.status import Answer, StatusClient, cap

NAME = "github"
TITLE = "GitHub"
SIGNATURE_HEADER = "X-Hub-Signature-256"
SECRET_HEADERS = (SIGNATURE_HEADER, "X-Hub-Signature")
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
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
    given = match.group(1).lower().encode("ascii")
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
        if hmac.compare_digest(expected, given):
            return
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
        fork=_fork(payload, what),
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


def _fork(payload: dict, what: str) -> bool:
    """The head repository is not the base repository: by id, else by path; a deleted head
    repository (null) is a fork (nothing says otherwise). Never by the `fork` flag, which says
    whether the base itself is a fork of something."""
    head = b.field(payload, "pull_request.head.repo", dict, what=what)
    if head is None:
        return True
    base = b.field(payload, "pull_request.base.repo", dict, default={}, what=what)
    if isinstance(head.get("id"), int) and isinstance(base.get("id"), int):
        return head["id"] != base["id"]
    return str(head.get("full_name", "")).lower() != str(base.get("full_name", "")).lower()


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
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {SIGNATURE_HEADER: f"sha256={digest}"}


def sign(body: bytes, secret: bytes, *, event: str | None = None, delivery: str) -> dict[str, str]:
    """The headers GitHub would send with `body` (for `cibridge send`)."""
    return {"Content-Type": "application/json", EVENT_HEADER: event or DEFAULT_EVENT,
            DELIVERY_HEADER: delivery, **signature(body, secret), "User-Agent": "bridge-send"}


def clone_host(api_host: str) -> str:
    """The git host an API host serves: api.github.com serves github.com (a GHES api_url is
    https://HOST/api/v3: the same host)."""
    return api_host[len("api."):] if api_host.startswith("api.") else api_host


#: Our states (a superset) -> what GitHub calls them.
STATES = {"pending": "pending", "running": "pending", "success": "success",
          "failure": "failure", "canceled": "error", "error": "error"}


class Statuses(StatusClient):
    """POST {api_url}/repos/{owner}/{repo}/statuses/{sha}, Authorization: Bearer."""

    provider = NAME
    states = STATES

    def request(self, status):
        body = {"state": self.states[status.state], "description": cap(status.description),
                "context": status.context}
        if status.target_url:
            body["target_url"] = status.target_url
        owner_repo = "/".join(quote(p, safe="") for p in status.repo.split("/", 1))
        return (f"{self.api_url}/repos/{owner_repo}/statuses/{quote(status.sha, safe='')}",
                {"Authorization": f"Bearer {self._token}", "Accept": "application/vnd.github+json",
                 "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "bridge"}, body)

    def classify(self, resp):
        code = resp.status_code
        if 200 <= code < 300:
            return Answer("sent", code, f"{code}")
        message = self._message(resp)
        if code == 422:
            # Unknown commit, description too long, 1,000 statuses on this commit: posting the
            # same again cannot succeed.
            return Answer("done", code, message)
        if code >= 500:
            raise StatusUnavailable(message, code, self._retry_after(resp))
        if code == 429 or (code == 403 and self._rate_limited(resp)):
            # GitHub's order: Retry-After if given, else the reset time when nothing remains.
            wait = self._retry_after(resp)
            raise StatusUnavailable(message, code, self._reset(resp) if wait is None else wait)
        hint = " (the token may not post statuses to this repository)" if code in (401, 403, 404) else ""
        raise StatusRejected(message + hint, code)

    def pull_head(self, repo: str, number: int) -> dict:
        """GET {api_url}/repos/{owner}/{repo}/pulls/{number}, with the `report:` token: the
        pull request's head as the Event fields an `issue_comment` lacks (head_sha, sha, after,
        head_ref, base_ref, head_repo, fork), plus `state` (open, closed). Raises
        StatusUnavailable (no answer, 5xx, rate limit) or StatusRejected (401/403/404, a body
        that is no pull request)."""
        owner_repo = "/".join(quote(p, safe="") for p in repo.split("/", 1))
        resp = self.send("GET", f"{self.api_url}/repos/{owner_repo}/pulls/{int(number)}", headers={
            "Authorization": f"Bearer {self._token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "bridge"})
        code = resp.status_code
        if code != 200:
            try:
                self.classify(resp)             # raises for a retry (5xx, rate limit)
            except StatusUnavailable:
                raise
            except StatusRejected:
                pass
            hint = " (the report: token may not read this repository)" if code in (401, 403, 404) else ""
            raise StatusRejected(self._message(resp) + hint, code)
        what = f"GET /repos/{repo}/pulls/{number}"
        try:
            doc = {"pull_request": resp.json()}
            head_sha = b.sha(doc, "pull_request.head.sha", required=True, what=what)
            return {"head_sha": head_sha, "sha": head_sha, "after": head_sha,
                    "head_ref": pulls.branch(doc, "pull_request.head.ref", what=what),
                    "base_ref": pulls.branch(doc, "pull_request.base.ref", what=what),
                    "head_repo": b.field(doc, "pull_request.head.repo.full_name", str, default="",
                                         what=what),
                    "fork": _fork(doc, what),
                    "state": b.field(doc, "pull_request.state", str, default="open", what=what)}
        except (ValueError, BadPayload) as exc:
            raise StatusRejected(f"{what}: {str(exc)[:200]}", code) from None

    def _rate_limited(self, resp) -> bool:
        return (resp.headers.get("x-ratelimit-remaining") == "0" or "Retry-After" in resp.headers
                or "rate limit" in resp.text[:2000].lower())

    def _reset(self, resp) -> float | None:
        if resp.headers.get("x-ratelimit-remaining") != "0":
            return None
        try:
            return min(max(0.0, float(resp.headers["x-ratelimit-reset"]) - self._now()), MAX_RETRY_AFTER)
        except (KeyError, ValueError):
            return None


# --- what GitHub offers to recover missed deliveries (dispatch/reconcile.py) ---------------------
# Hook delivery logs: GET /repos/{owner}/{repo}/hooks/{id}/deliveries (org hooks: /orgs/{org}/...),
# newest first, `per_page` up to 100, cursor pages in the Link header, kept 3 days (GHES 7); a
# repo hook needs a repository admin's token with `admin:repo_hook` or `repo` (fine-grained:
# "Webhooks" read, write to redeliver; without admin access GitHub answers 404), an org hook an
# owner's `admin:org_hook`. Redeliver: POST .../deliveries/{id}/attempts (202); the
# redelivery keeps the X-GitHub-Delivery GUID. Refs: GET /repos/{o}/{r}/git/matching-refs/heads/
# and .../tags/ ("Contents" read); an annotated tag's object is peeled with GET .../git/tags/{sha}.

#: What a token needs, for the warning when the host refuses it.
RECONCILE_SCOPES = ("repository hooks: a repository admin's token with `admin:repo_hook` or `repo` "
                    "(fine-grained: \"Webhooks\" read, write to redeliver); organization hooks: an "
                    "owner's `admin:org_hook`; refs: \"Contents\" read")
#: The events whose lost deliveries are worth recovering.
RECOVER_EVENTS = ("push",)


class Reconcile(HostAPI):
    """GitHub's delivery logs, redelivery and refs with one token."""

    def auth_headers(self, token):
        return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}

    def _hook_path(self, hook) -> str:
        if hook.org is not None:
            return f"/orgs/{quote(hook.org, safe='')}/hooks/{int(hook.id)}"
        return f"/repos/{_repo_path(hook.repo)}/hooks/{int(hook.id)}"

    def deliveries(self, hook, *, since: float, max_pages: int = 30):
        """The hook's delivery attempts newer than `since` (epoch seconds), newest first."""
        out: list[HostDelivery] = []
        doc, headers = self.get(self._hook_path(hook) + "/deliveries", {"per_page": 100})
        for _ in range(max_pages):
            for item in doc or ():
                at = _epoch(item.get("delivered_at"))
                if at and at < since:
                    return out
                code = item.get("status_code")
                out.append(HostDelivery(host_id=str(item.get("id")), guid=str(item.get("guid") or ""),
                                        delivered_at=at, ok=isinstance(code, int) and 200 <= code < 300,
                                        status_code=code, event=str(item.get("event") or ""),
                                        redelivery=bool(item.get("redelivery"))))
            link = next_link(headers)
            if not link:
                break
            doc, headers = self.get("", url=link)
        return out

    def redeliver(self, hook, delivery: HostDelivery) -> None:
        self.post(f"{self._hook_path(hook)}/deliveries/{quote(delivery.host_id, safe='')}/attempts")

    def refs(self, repo: str, kind: str) -> list[HostRef]:
        """Branches (kind "heads") or tags ("tags") of `repo`; an annotated tag's commit is left
        None (`peel` finds it, only for the tags a run acts on: one call each)."""
        path = f"/repos/{_repo_path(repo)}/git/matching-refs/{kind}/"
        doc, headers = self.get(path, {"per_page": 100})
        items = list(doc or ())
        while (link := next_link(headers)):
            doc, headers = self.get("", url=link)
            items += list(doc or ())
        out = []
        for item in items:
            obj = item.get("object") or {}
            sha = str(obj.get("sha") or "")
            out.append(HostRef(ref=str(item.get("ref") or ""), sha=sha,
                               commit=None if obj.get("type") == "tag" else sha))
        return out

    def peel(self, repo: str, sha: str) -> str:
        """The commit an annotated tag object points at."""
        tag, _ = self.get(f"/repos/{_repo_path(repo)}/git/tags/{quote(sha, safe='')}")
        return str(((tag or {}).get("object") or {}).get("sha") or sha)


def _repo_path(repo: str) -> str:
    return "/".join(quote(p, safe="") for p in repo.split("/", 1))


def _epoch(stamp) -> float:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def clone_url(api_url: str, repo: str) -> str:
    """The https clone URL of `repo` on the host `api_url` serves."""
    host = clone_host(urlsplit(api_url).netloc)
    return f"https://{host}/{repo}.git"


def synthesize_push(*, repo: str, ref: str, before: str, after: str, sha: str, clone: str,
                    delivery: str) -> tuple[dict, bytes]:
    """Headers and body of a push GitHub would have sent for `before..after` on `ref`, with no
    commit list (unknown: path filters ask the mirror), for a push the host never delivered."""
    body = {"ref": ref, "before": before, "after": after, "created": before == ZERO_SHA,
            "deleted": after == ZERO_SHA, "forced": False, "commits": [],
            "head_commit": None if after == ZERO_SHA else {"id": sha, "message": ""},
            "repository": {"full_name": repo, "clone_url": clone},
            "pusher": {"name": "bridge-reconcile"}}
    return ({"Content-Type": "application/json", EVENT_HEADER: "push", DELIVERY_HEADER: delivery,
             "User-Agent": "bridge-reconcile"},
            json.dumps(body, sort_keys=True).encode("utf-8"))
