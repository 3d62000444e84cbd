"""Gitea and Forgejo providers (one shape, two names): check the bare-hex HMAC-SHA256 of the raw
body (`X-Gitea-Signature` / `X-Forgejo-Signature`, or the GitHub-style `X-Hub-Signature-256`),
then turn `push` (branches and tags), `delete`, `pull_request` and pull request comments
(`issue_comment` with `is_pull`) into an `Event`; `create` repeats a push and every other event
is `Ignored`. Also all else these hosts mean: commit statuses, signing
(for `cibridge send`), API URL, headers and clone rules.

Input: request headers and the raw body bytes. Output: `Event` | `Ignored`, or
`VerificationFailed` (401) / `BadPayload` (400). `GITEA` and `FORGEJO` are the registered hosts.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from bridge.errors import BadPayload, StatusRejected, StatusUnavailable, VerificationFailed
from bridge.events import ZERO_SHA, Event, Ignored
from bridge.providers import body as b
from bridge.providers import pulls
from bridge.providers.hmacsig import hex_digest, signed_by_one_of
from bridge.providers.status import Answer, StatusClient, cap

HUB_HEADER = "X-Hub-Signature-256"
_HEX = re.compile(r"(?:sha256=)?([0-9a-fA-F]{64})")
#: Gitea's default `[ui] FEED_MAX_COMMIT_NUM`: the most commits a payload lists when it does not
#: say how many there were (`total_commits` came with Gitea 1.17).
LEGACY_COMMIT_LIST = 5


class GiteaStatuses(StatusClient):
    """POST {api_url}/repos/{owner}/{repo}/statuses/{sha}, Authorization: token."""

    provider = "gitea"
    asks_pull_heads = True
    #: Our states (a superset) -> Gitea's (pending, success, error, failure, warning).
    states = {"pending": "pending", "running": "pending", "success": "success",
              "failure": "failure", "canceled": "error", "error": "error"}

    def request(self, status):
        body = {"state": self.states[status.state], "description": cap(status.description),
                "context": status.context}
        if status.target_url:
            body["target_url"] = status.target_url
        owner_repo = "/".join(quote(p, safe="") for p in status.repo.split("/", 1))
        return (f"{self.api_url}/repos/{owner_repo}/statuses/{quote(status.sha, safe='')}",
                {"Authorization": f"token {self._token}", "Accept": "application/json",
                 "User-Agent": "bridge"}, body)

    def classify(self, resp):
        code = resp.status_code
        if 200 <= code < 300:
            return Answer("sent", code, f"{code}")
        message = self._message(resp)
        if code in (400, 422):          # a value Gitea refuses (unknown state, bad SHA): for good
            return Answer("done", code, message)
        if code in (408, 429) or code >= 500:
            raise StatusUnavailable(message, code, self._retry_after(resp))
        hint = " (the token may not post statuses to this repository)" if code in (401, 403, 404) else ""
        raise StatusRejected(message + hint, code)


    def pull_head(self, repo: str, number: int) -> dict:
        """GET {api_url}/repos/{owner}/{repo}/pulls/{index}: the head a comment's payload lacked,
        as Event fields (head_sha, sha, after, head_ref, base_ref, head_repo, fork) plus `state`."""
        owner_repo = "/".join(quote(p, safe="") for p in repo.split("/", 1))
        resp = self.send("GET", f"{self.api_url}/repos/{owner_repo}/pulls/{int(number)}", headers={
            "Authorization": f"token {self._token}", "Accept": "application/json", "User-Agent": "bridge"})
        code = resp.status_code
        if code != 200:
            if code in (408, 429) or code >= 500:
                raise StatusUnavailable(self._message(resp), code, self._retry_after(resp))
            hint = " (the report: token may not read this repository)" if code in (401, 403, 404) else ""
            raise StatusRejected(self._message(resp) + hint, code)
        what = f"GET /repos/{repo}/pulls/{number}"
        try:
            return pulls.head_of(resp.json(), what=what, fork=lambda doc: _fork(doc["pull_request"], what))
        except (ValueError, BadPayload) as exc:
            raise StatusRejected(f"{what}: {str(exc)[:200]}", code) from None


class ForgejoStatuses(GiteaStatuses):
    provider = "forgejo"


class GiteaHost:
    """One of the two hosts: its name and header prefix. Forgejo also sends Gitea's headers (and
    GitHub's copies), so each host reads its own first, then the other's."""

    DEFAULT_EVENT = "push"
    CLONE_USER = "oauth2"           # any user name: Gitea's basic auth takes the password as a token
    COMMIT_CAP = None               # the payload says how many commits there were (total_commits)
    PUBLIC_HOST = None              # no public default host: the content key always names it

    def __init__(self, name: str, title: str, prefix: str, other_prefix: str, statuses: type):
        self.NAME, self.TITLE = name, title
        self.EVENT_HEADER, self.DELIVERY_HEADER = f"{prefix}-Event", f"{prefix}-Delivery"
        self.SIGNATURE_HEADER = f"{prefix}-Signature"
        self._event_headers = (self.EVENT_HEADER, f"{other_prefix}-Event")
        self._delivery_headers = (self.DELIVERY_HEADER, f"{other_prefix}-Delivery")
        self._signature_headers = (self.SIGNATURE_HEADER, f"{other_prefix}-Signature", HUB_HEADER)
        # Gogs' name too: older Gitea signed under it, and x-gogs- headers are kept.
        self.SECRET_HEADERS = (self.SIGNATURE_HEADER, f"{other_prefix}-Signature", HUB_HEADER,
                               "X-Hub-Signature", "X-Gogs-Signature")
        self.KEEP_PREFIXES = (prefix.lower() + "-", other_prefix.lower() + "-", "x-gogs-")
        self.API_URL = ""           # no public default: report.api_url is required
        self.Statuses = statuses

    def __repr__(self) -> str:
        return f"<provider {self.NAME}>"

    # -- verify ----------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes]) -> None:
        """Raise `VerificationFailed` unless the first signature header present (the host's own,
        the other's, then `X-Hub-Signature-256`) is HMAC-SHA256(secret, body) for one of
        `secrets`. Messages name the header, never a value. (The host sends them empty when the
        hook has no secret: that is a missing signature.)"""
        name = next((h for h in self._signature_headers if headers.get(h)), None)
        if name is None:
            raise VerificationFailed(f"{self.SIGNATURE_HEADER} is missing")
        value = headers.get(name)
        match = _HEX.fullmatch(value) if isinstance(value, str) else None
        if match is None or (name == HUB_HEADER) != value.startswith("sha256="):
            raise VerificationFailed(f"{name} is malformed: expected 64 hex digits"
                                     + (" after 'sha256='" if name == HUB_HEADER else ""))
        if not signed_by_one_of(body, secrets, match.group(1)):
            raise VerificationFailed(f"{name} does not match the body")

    def delivery_id(self, headers: Mapping[str, str]) -> str | None:
        return next((headers[h] for h in self._delivery_headers if headers.get(h)), None)

    def event_name(self, headers: Mapping[str, str]) -> str:
        return next((headers[h] for h in self._event_headers if headers.get(h)), "")

    # -- normalize -------------------------------------------------------------------------

    def normalize(self, headers: Mapping[str, str], body: bytes, *, source: str,
                  delivery_id: str) -> Event | Ignored:
        """`push` (branch or tag) and `delete` as an `Event`; `create` and the rest `Ignored`."""
        name = self.event_name(headers)
        if not name:
            raise BadPayload(f"{self.EVENT_HEADER} header is missing")
        if name == "create":
            return Ignored("event 'create' is not handled: the push event of the same ref is",
                           event_name=name)
        if name not in ("push", "delete", "pull_request", "issue_comment"):
            return Ignored(f"event '{name}' is not handled", event_name=name)
        payload = b.parse_json(body)
        if name == "pull_request":
            return self._pull_request(payload, source=source, delivery_id=delivery_id)
        if name == "issue_comment":
            return self._comment(payload, source=source, delivery_id=delivery_id)
        if name == "delete":
            return self._delete(payload, source=source, delivery_id=delivery_id)
        return self._push(payload, source=source, delivery_id=delivery_id)

    def _push(self, payload: dict, *, source: str, delivery_id: str) -> Event | Ignored:
        ref = b.ref(payload)
        ref_name = _short(ref)
        if ref_name is None:
            return Ignored(f"ref '{ref}' is neither a branch nor a tag", event_name="push")
        before = b.sha(payload, "before")
        after = b.sha(payload, "after", required=True)
        deleted = after == ZERO_SHA     # never sent (a deletion is a `delete` event): harmless
        commits = b.commits(payload)
        total = b.field(payload, "total_commits", int)
        complete = len(commits) >= total if total is not None else len(commits) < LEGACY_COMMIT_LIST
        sha = None if deleted else b.sha(payload, "head_commit.id", default=after)
        head = next((c for c in commits if c.id == sha), None)   # commits[] lists newest first
        return Event(
            provider=self.NAME, source=source, delivery_id=delivery_id,
            kind="delete" if deleted else "tag" if ref.startswith("refs/tags/") else "push",
            repo=_repo(payload),                              # repository.full_name
            ref=ref, ref_name=ref_name,                       # ref, always full
            before=before, after=after,                       # before / after
            sha=sha,                                          # head_commit.id (older: after)
            created=before == ZERO_SHA,                       # no flag: before all zeros
            deleted=deleted,
            commits=commits,                                  # commits[] (a few), with file lists
            commits_complete=complete,                        # total_commits is the real count
            pusher=(b.field(payload, "pusher.login", str)     # pusher.login (older: username)
                    or b.field(payload, "pusher.username", str, default="")),
            default_branch=b.field(payload, "repository.default_branch", str, default=""),
            clone_urls=_clone_urls(payload),                  # repository.clone_url, ssh_url
            head_message=(b.field(payload, "head_commit.message", str)
                          or (head.message if head else "")),
            repo_case_insensitive=True,                       # Gitea looks repos up by lower_name
        )

    def _delete(self, payload: dict, *, source: str, delivery_id: str) -> Event | Ignored:
        short = b.field(payload, "ref", str, required=True, what="delete payload")
        kind = b.field(payload, "ref_type", str, required=True, what="delete payload")
        if kind not in ("branch", "tag"):
            return Ignored(f"deleted ref_type '{kind}' is neither a branch nor a tag",
                           event_name="delete")
        full = {"ref": ("refs/heads/" if kind == "branch" else "refs/tags/") + short}
        ref = b.ref(full, what="delete payload")
        return Event(
            provider=self.NAME, source=source, delivery_id=delivery_id, kind="delete",
            repo=_repo(payload, "delete payload"),
            ref=ref, ref_name=short,                          # ref (short) + ref_type
            before="",                                        # the payload names no commit
            after=ZERO_SHA, sha=None, deleted=True,
            pusher=b.field(payload, "sender.login", str, default="", what="delete payload"),
            default_branch=b.field(payload, "repository.default_branch", str, default=""),
            clone_urls=_clone_urls(payload),
            repo_case_insensitive=True,
        )

    def _pull_request(self, payload: dict, *, source: str, delivery_id: str) -> Event:
        """`pull_request`: Gitea's actions in GitHub Actions' words (`synchronized` is
        `synchronize`; a merge is `closed` with `pull_request.merged`)."""
        what = "pull_request payload"
        host_action = b.field(payload, "action", str, required=True, what=what)
        pr = b.field(payload, "pull_request", dict, required=True, what=what)
        head_sha = b.sha(pr, "head.sha", required=True, what=what)
        return pulls.event(
            provider=self.NAME, source=source, delivery_id=delivery_id, kind="pull_request",
            pull_ref=PULL_REF, repo=_repo(payload, what),         # repository.full_name (the base)
            number=pulls.number(payload, "number", what=what),    # number (= pull_request.number)
            action=PULL_ACTIONS.get(host_action, host_action), host_action=host_action,
            head_sha=head_sha,                                    # pull_request.head.sha
            base_ref=pulls.branch(pr, "base.ref", what=what),     # pull_request.base.ref
            head_ref=pulls.branch(pr, "head.ref", what=what),     # pull_request.head.ref
            head_repo=b.field(pr, "head.repo.full_name", str, default="", what=what),
            fork=_fork(pr, what),                                 # head.repo_id vs base.repo_id
            merged=bool(b.field(pr, "merged", bool, default=False, what=what)),
            draft=bool(b.field(pr, "draft", bool, default=False, what=what)),
            author=b.field(pr, "user.login", str, default="", what=what),
            author_association="",                                # Gitea sends no association
            updated_at=b.field(pr, "updated_at", str, default="", what=what),
            pusher=b.field(payload, "sender.login", str, default="", what=what),
            default_branch=b.field(payload, "repository.default_branch", str, default="", what=what),
            clone_urls=_clone_urls(payload), repo_case_insensitive=True)

    def _comment(self, payload: dict, *, source: str, delivery_id: str) -> Event | Ignored:
        """`issue_comment` on a pull request (`is_pull: true`): a comment event; the head comes
        from the payload's `pull_request` where it has one, else the dispatcher asks the API."""
        what = "issue_comment payload"
        if not b.field(payload, "is_pull", bool, default=False, what=what):
            return Ignored("a comment on an issue, not on a pull request", event_name="issue_comment")
        pr = b.field(payload, "pull_request", dict, default={}, what=what)
        action = b.field(payload, "action", str, required=True, what=what)
        return pulls.event(
            provider=self.NAME, source=source, delivery_id=delivery_id, kind="comment",
            pull_ref=PULL_REF, repo=_repo(payload, what),
            number=pulls.number(payload, "issue.number", what=what),
            action=action, host_action=action,
            head_sha=b.sha(pr, "head.sha", what=what),
            base_ref=pulls.branch(pr, "base.ref", what=what, required=False),
            head_ref=pulls.branch(pr, "head.ref", what=what, required=False),
            head_repo=b.field(pr, "head.repo.full_name", str, default="", what=what),
            fork=_fork(pr, what) if pr else False,
            comment=b.field(payload, "comment.body", str, default="", what=what),
            comment_id=str(b.field(payload, "comment.id", int, required=True, what=what)),
            author=b.field(payload, "comment.user.login", str, default="", what=what),
            author_association="",
            updated_at=b.field(payload, "comment.updated_at", str, default="", what=what),
            pusher=b.field(payload, "sender.login", str, default="", what=what),
            default_branch=b.field(payload, "repository.default_branch", str, default="", what=what),
            clone_urls=_clone_urls(payload), repo_case_insensitive=True)

    def stored_body(self, body: bytes) -> bytes:
        """The body as the store keeps it: without the top-level `secret` that Gitea before 1.13
        (and Gogs) put in every payload, the hook's secret itself (never in the database). Other
        bodies are kept byte for byte."""
        if b'"secret"' not in body:
            return body
        payload = b.parse_json(body)
        if "secret" not in payload:
            return body
        payload.pop("secret")
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    # -- signing, clone rules ----------------------------------------------------------------

    def signature(self, body: bytes, secret: bytes) -> dict[str, str]:
        """The signature headers the host sends: bare hex, and GitHub's form of the same."""
        digest = hex_digest(secret, body)
        return {self.SIGNATURE_HEADER: digest, HUB_HEADER: f"sha256={digest}"}

    def sign(self, body: bytes, secret: bytes, *, event: str | None = None,
             delivery: str) -> dict[str, str]:
        """The headers the host would send with `body` (for `cibridge send`)."""
        event = event or self.DEFAULT_EVENT
        return {"Content-Type": "application/json", self.EVENT_HEADER: event,
                f"{self.EVENT_HEADER}-Type": event, self.DELIVERY_HEADER: delivery,
                **self.signature(body, secret), "User-Agent": "bridge-send"}

    def clone_host(self, api_host: str) -> str:
        """The API lives on the git host itself (https://HOST/api/v1)."""
        return api_host


#: Where Gitea and Forgejo serve a pull request's head in the base repository.
PULL_REF = "refs/pull/{n}/head"
#: Gitea's pull request actions that GitHub Actions words differently.
PULL_ACTIONS = {"synchronized": "synchronize", "label_updated": "labeled", "label_cleared": "unlabeled"}


def _fork(pr: dict, what: str) -> bool:
    """The head repository is not the base: by repo_id (Gitea sends both), else by path; no head
    repository at all (a deleted fork) is a fork."""
    head = b.field(pr, "head.repo_id", int, what=what)
    base = b.field(pr, "base.repo_id", int, what=what)
    if head is not None and base is not None and (head or base):
        return head != base
    head_repo = b.field(pr, "head.repo.full_name", str, what=what)
    if head_repo is None:
        return True
    return head_repo.lower() != b.field(pr, "base.repo.full_name", str, default="", what=what).lower()


def _short(ref: str) -> str | None:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return None


def _repo(payload: dict, what: str = "push payload") -> str:
    repo = b.field(payload, "repository.full_name", str, required=True, what=what)
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise BadPayload(f"{what} field 'repository.full_name' is not owner/name: {repo[:100]!r}")
    return repo


def _clone_urls(payload: dict) -> tuple[str, ...]:
    urls = (b.field(payload, "repository.clone_url", str), b.field(payload, "repository.ssh_url", str))
    return tuple(url for url in urls if url)


GITEA = GiteaHost("gitea", "Gitea", "X-Gitea", "X-Forgejo", GiteaStatuses)
FORGEJO = GiteaHost("forgejo", "Forgejo", "X-Forgejo", "X-Gitea", ForgejoStatuses)
