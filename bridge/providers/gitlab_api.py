"""GitLab's REST API, for the host module `providers/gitlab.py` (which exposes it): commit
statuses, and the hook event logs, resend and branch/tag listings reconcile uses, plus the push
GitLab would have sent for a recovered ref.

Input: an API URL and a token; a status, a hook or a project. Output: HTTP requests and their
answers as StatusClient answers, `HostDelivery`/`HostRef` lists, or a synthesized delivery.
"""
from __future__ import annotations

import json
from urllib.parse import quote, urlsplit

from bridge.errors import StatusRejected, StatusUnavailable
from bridge.events import ZERO_SHA
from bridge.providers.hostapi import HostAPI, HostDelivery, HostRef, epoch
from bridge.providers.status import Answer, StatusClient, cap

NAME = "gitlab"
TOKEN_HEADER = "X-Gitlab-Token"
EVENT_HEADER = "X-Gitlab-Event"


def clone_host(api_host: str) -> str:
    """The git host an API host serves: the same one (gitlab.com/api/v4 serves gitlab.com)."""
    return api_host


#: Our states (a superset) -> what GitLab calls them.
STATES = {"pending": "pending", "running": "running", "success": "success",
          "failure": "failed", "canceled": "canceled", "error": "failed"}


class Statuses(StatusClient):
    """POST {api_url}/projects/{url-encoded path}/statuses/{sha}, PRIVATE-TOKEN."""

    provider = NAME
    states = STATES

    def request(self, status):
        body = {"state": self.states[status.state], "name": status.context,
                "description": cap(status.description), "ref": status.ref}
        if status.target_url:
            body["target_url"] = status.target_url
        return (f"{self.api_url}/projects/{quote(status.repo, safe='')}/statuses/"
                f"{quote(status.sha, safe='')}",
                {"PRIVATE-TOKEN": self._token, "User-Agent": "bridge"}, body)

    def classify(self, resp):
        code = resp.status_code
        if 200 <= code < 300:
            return Answer("sent", code, f"{code}")
        message = self._message(resp)
        if code == 400 and "cannot transition status" in message.lower():
            return Answer("done", code, message)     # it already has this state
        if code in (409, 429) or code >= 500:         # 409: a concurrent update of the same status
            raise StatusUnavailable(message, code, self._retry_after(resp))
        hint = " (the token may not post statuses to this project)" if code in (401, 403, 404) else ""
        raise StatusRejected(message + hint, code)


# --- what GitLab offers to recover missed deliveries (dispatch/reconcile.py) ---------------------
# Hook event log: GET /projects/:id/hooks/:hook_id/events (GitLab 17.3+), the last 7 days,
# `page`/`per_page` pages, each with the request's headers and body; resend with
# POST .../events/:hook_event_id/resend (17.4+; 5 a minute per hook and user). Both need a
# Maintainer's token with `api` (or `read_api` to list). Refs: GET /projects/:id/repository/branches
# and .../tags (`read_api` or `read_repository`). A resend keeps the Idempotency-Key.

RECONCILE_SCOPES = ("a Maintainer's token with `api` scope (hook events need GitLab 17.3, "
                    "resend 17.4); refs: `read_api`")
RECOVER_EVENTS = ("Push Hook", "Tag Push Hook", "System Hook")


class Reconcile(HostAPI):
    """GitLab's hook event logs, resend and refs with one token."""

    def auth_headers(self, token):
        return {"PRIVATE-TOKEN": token}

    def _hook_path(self, hook) -> str:
        return f"/projects/{quote(hook.repo, safe='')}/hooks/{int(hook.id)}"

    def deliveries(self, hook, *, since: float, max_pages: int = 30):
        """The hook's events newer than `since` (epoch seconds; GitLab keeps 7 days), newest
        first as GitLab lists them."""
        out: list[HostDelivery] = []
        for item in self.pages(self._hook_path(hook) + "/events", {"per_page": 100},
                               max_pages=max_pages):
            at = epoch(item.get("created_at"))
            if at and at < since:
                break
            req = item.get("request_headers") or {}
            code = str(item.get("response_status") or "")
            out.append(HostDelivery(
                host_id=str(item.get("id")),
                guid=str(req.get("Idempotency-Key") or req.get("X-Gitlab-Event-UUID") or ""),
                delivered_at=at, ok=code.isdigit() and 200 <= int(code) < 300,
                status_code=int(code) if code.isdigit() else None,
                event=str(req.get(EVENT_HEADER) or ""), payload=item.get("request_data"),
                headers={k: str(v) for k, v in req.items() if k.lower() != TOKEN_HEADER.lower()}))
        return out

    def redeliver(self, hook, delivery: HostDelivery) -> None:
        self.post(f"{self._hook_path(hook)}/events/{quote(delivery.host_id, safe='')}/resend")

    def refs(self, repo: str, kind: str) -> list[HostRef]:
        """Branches (kind "heads") or tags ("tags") of the project `repo`."""
        path = f"/projects/{quote(repo, safe='')}/repository/{'branches' if kind == 'heads' else 'tags'}"
        out = []
        for item in self.pages(path, {"per_page": 100}):
            commit = str((item.get("commit") or {}).get("id") or "")
            out.append(HostRef(ref=f"refs/{kind}/{item.get('name')}",
                               sha=str(item.get("target") or commit), commit=commit))
        return out

    def peel(self, repo: str, sha: str) -> str:
        """GitLab lists each tag's commit with it: nothing to ask."""
        return sha


def clone_url(api_url: str, repo: str) -> str:
    """The https clone URL of project `repo` on the host `api_url` serves."""
    return f"https://{clone_host(urlsplit(api_url).netloc)}/{repo}.git"


def synthesize_push(*, repo: str, ref: str, before: str, after: str, sha: str, clone: str,
                    delivery: str) -> tuple[dict, bytes]:
    """Headers and body of the push GitLab would have sent for `before..after` on `ref`, with no
    commit list (`total_commits_count` says one is missing: path filters ask the mirror)."""
    body = {"object_kind": "tag_push" if ref.startswith("refs/tags/") else "push",
            "ref": ref, "before": before, "after": after,
            "checkout_sha": None if after == ZERO_SHA else sha,
            "user_username": "bridge-reconcile", "commits": [], "total_commits_count": 1,
            "project": {"path_with_namespace": repo, "git_http_url": clone}}
    event = "Tag Push Hook" if ref.startswith("refs/tags/") else "Push Hook"
    return ({"Content-Type": "application/json", EVENT_HEADER: event, "X-Gitlab-Event-UUID": delivery,
             "User-Agent": "bridge-reconcile"},
            json.dumps(body, sort_keys=True).encode("utf-8"))
