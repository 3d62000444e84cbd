"""GitHub's REST API, for the host module `providers/github.py` (which exposes it): commit
statuses, a pull request's head (for comments), and the hook delivery logs, redelivery and refs
reconcile uses, plus the push GitHub would have sent for a recovered ref.

Input: an API URL and a token; a status, a pull request, a hook or a repository. Output: HTTP
requests and their answers as StatusClient answers, Event fields, `HostDelivery`/`HostRef`
lists, or a synthesized delivery.
"""
from __future__ import annotations

import json
from urllib.parse import quote, urlsplit

from bridge.errors import BadPayload, StatusRejected, StatusUnavailable
from bridge.events import ZERO_SHA
from bridge.policies import MAX_RETRY_AFTER
from bridge.providers import body as b
from bridge.providers import pulls
from bridge.providers.hostapi import HostAPI, HostDelivery, HostRef, epoch
from bridge.providers.status import Answer, StatusClient, cap

NAME = "github"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"


def head_is_fork(payload: dict, what: str) -> bool:
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
    asks_pull_heads = True

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
            return pulls.head_of(resp.json(), what=what, fork=lambda doc: head_is_fork(doc, what))
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
        for item in self.pages(self._hook_path(hook) + "/deliveries", {"per_page": 100},
                               max_pages=max_pages):
            at = epoch(item.get("delivered_at"))
            if at and at < since:
                break
            code = item.get("status_code")
            out.append(HostDelivery(host_id=str(item.get("id")), guid=str(item.get("guid") or ""),
                                    delivered_at=at, ok=isinstance(code, int) and 200 <= code < 300,
                                    status_code=code, event=str(item.get("event") or ""),
                                    redelivery=bool(item.get("redelivery"))))
        return out

    def redeliver(self, hook, delivery: HostDelivery) -> None:
        self.post(f"{self._hook_path(hook)}/deliveries/{quote(delivery.host_id, safe='')}/attempts")

    def refs(self, repo: str, kind: str) -> list[HostRef]:
        """Branches (kind "heads") or tags ("tags") of `repo`; an annotated tag's commit is left
        None (`peel` finds it, only for the tags a run acts on: one call each)."""
        path = f"/repos/{_repo_path(repo)}/git/matching-refs/{kind}/"
        out = []
        for item in self.pages(path, {"per_page": 100}):
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
