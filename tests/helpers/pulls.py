"""Pull request comment bodies in the shapes the hosts document (GitHub `issue_comment`, GitLab
`Note Hook` on a merge request; no shared payload exists for them), for the comment tests."""
from __future__ import annotations

HEAD = "6dcb09b5b57875f334f61aebed695e2e4193db5e"


def issue_comment(body="/retest", association="MEMBER", action="created", on_pull=True, login="octocat",
                  repo="acme/api", number=7, comment_id=1366000001):
    """GitHub docs, webhook events: issue_comment (a pull request is an issue with `pull_request`)."""
    owner = repo.split("/")[0]
    issue = {"url": f"https://api.github.com/repos/{repo}/issues/{number}", "number": number, "title": "Fix",
             "user": {"login": "contributor", "id": 2}, "state": "open",
             "author_association": "CONTRIBUTOR", "body": "Please pull these changes"}
    if on_pull:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/{repo}/pulls/{number}",
                                 "html_url": f"https://github.com/{repo}/pull/{number}",
                                 "diff_url": f"https://github.com/{repo}/pull/{number}.diff",
                                 "patch_url": f"https://github.com/{repo}/pull/{number}.patch"}
    return {"action": action, "issue": issue,
            "comment": {"id": comment_id, "node_id": "IC_x", "body": body,
                        "user": {"login": login, "id": 1, "type": "User"},
                        "created_at": "2026-12-07T12:00:00Z", "updated_at": "2026-12-07T12:00:00Z",
                        "author_association": association,
                        "html_url": f"https://github.com/{repo}/pull/{number}#issuecomment-{comment_id}"},
            "repository": {"id": 1296269, "name": repo.split("/")[1], "full_name": repo, "private": False,
                           "owner": {"login": owner}, "default_branch": "main",
                           "clone_url": f"https://github.com/{repo}.git",
                           "ssh_url": f"git@github.com:{repo}.git"},
            "sender": {"login": login, "id": 1}}


def note(text="/retest", username="alice", noteable="MergeRequest", action="create"):
    """GitLab docs, webhook events: comment on a merge request (Note Hook)."""
    payload = {
        "object_kind": "note", "event_type": "note",
        "user": {"id": 1, "name": "Alice", "username": username, "email": "[REDACTED]"},
        "project_id": 5,
        "project": {"id": 5, "name": "api", "path_with_namespace": "acme/api", "default_branch": "main",
                    "git_http_url": "https://gitlab.example.com/acme/api.git",
                    "git_ssh_url": "git@gitlab.example.com:acme/api.git",
                    "web_url": "https://gitlab.example.com/acme/api"},
        "repository": {"name": "api", "url": "git@gitlab.example.com:acme/api.git",
                       "homepage": "https://gitlab.example.com/acme/api"},
        "object_attributes": {"id": 1244, "note": text, "noteable_type": noteable, "author_id": 1,
                              "created_at": "2026-12-07 12:00:00 UTC",
                              "updated_at": "2026-12-07 12:00:00 UTC", "project_id": 5,
                              "noteable_id": 7, "system": False, "action": action,
                              "url": "https://gitlab.example.com/acme/api/-/merge_requests/1#note_1244"},
    }
    if noteable == "MergeRequest":
        payload["merge_request"] = {
            "id": 7, "iid": 1, "target_branch": "main", "source_branch": "feature/x",
            "source_project_id": 5, "target_project_id": 5, "author_id": 2, "title": "Fix",
            "state": "opened", "draft": False, "work_in_progress": False,
            "source": {"path_with_namespace": "acme/api"}, "target": {"path_with_namespace": "acme/api"},
            "last_commit": {"id": HEAD, "message": "fix things\n", "timestamp": "2026-12-07T11:00:00+00:00"}}
    return payload
