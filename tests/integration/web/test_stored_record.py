"""What ingress stores for a delivery, beyond the reply: the outcome, the event, every verdict
(with the clause that stopped a rule), each job's needs_files and path filter, the content key,
and the host's delivery id clipped to its column and kept printable."""
import json

import pytest
from helpers.rules import GITHUB_SECRET, GITHUB_TO_MEMORY
from helpers.payloads import sign_github

A, B = "a" * 40, "b" * 40

RULES = GITHUB_TO_MEMORY + """\
rules:
  - name: main-src
    on: {repo: acme/api, branches: [main], paths: ["src/**"]}
    run: {target: mem, parameters: {SHA: "${sha}"}}
  - name: main-docs
    on: {repo: acme/api, branches: [main], paths: ["docs/**"]}
    run: {target: mem}
  - name: other-repo
    on: {repo: acme/web}
    run: {target: mem}
"""


def post(app, delivery, *, repo="acme/api", ref="refs/heads/main", files=("src/x.py",), created=False,
         before=A, commits=True):
    payload = {"ref": ref, "before": before, "after": B, "created": created,
               "repository": {"full_name": repo}, "pusher": {"name": "octo"},
               "head_commit": {"id": B, "message": "m"},
               "commits": [{"id": B, "message": "m", "added": [], "removed": [],
                            "modified": list(files)}] if commits else []}
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json", **sign_github(body, GITHUB_SECRET)}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return app.test_client().post("/hooks/github", data=body, headers=headers)


@pytest.fixture
def app_store(make_app):
    return make_app(RULES)


def test_a_matched_delivery_stores_outcome_event_verdicts_and_jobs(app_store):
    app, store = app_store
    resp = post(app, "d-match")
    assert resp.status_code == 202, resp.get_data()
    row = store.get_delivery("d-match")
    assert row["outcome"] == "matched" and row["reason"] == ""
    assert (row["source"], row["provider"], row["repo"], row["ref"]) == ("github", "github", "acme/api",
                                                                         "refs/heads/main")
    assert row["event"]["repo"] == "acme/api" and row["event"]["after"] == B and row["event"]["sha"] == B
    assert row["verdicts"] == [
        {"rule": "main-src", "matched": True, "reason": "file 'src/x.py' matches paths [src/**]",
         "needs_files": False, "stopped_by": None},
        {"rule": "main-docs", "matched": False, "reason": row["verdicts"][1]["reason"], "needs_files": False,
         "stopped_by": {"clause": "paths", "value": "1 file changed", "patterns": ["docs/**"]}},
    ]
    assert "docs/**" in row["verdicts"][1]["reason"]
    assert row["content_key"] == f"github|acme/api|refs/heads/main|{A}|{B}"
    [job] = row["jobs"]
    assert (job["rule"], job["target"], job["state"]) == ("main-src", "mem", "queued")
    assert job["request"] == {"target": "mem", "parameters": {"SHA": B}}
    assert job["needs_files"] is False


def test_a_new_branch_without_commits_stores_jobs_that_need_files(app_store):
    app, store = app_store
    resp = post(app, "d-new", before="0" * 40, created=True, commits=False)
    assert resp.status_code == 202, resp.get_data()
    assert [j["needs_files"] for j in resp.get_json()["jobs"]] == [True, True]
    row = store.get_delivery("d-new")
    assert [v["needs_files"] for v in row["verdicts"]] == [True, True]
    src, docs = row["jobs"]
    assert src["needs_files"] is True and docs["needs_files"] is True
    assert src["path_filter"] == {"paths": ["src/**"], "paths_ignore": [], "on_unknown_files": "run"}


def test_a_delivery_nothing_matches_stores_no_match_and_why(app_store):
    app, store = app_store
    resp = post(app, "d-none", files=("README",))
    assert resp.status_code == 200
    row = store.get_delivery("d-none")
    assert row["outcome"] == "no_match"
    assert row["reason"] == resp.get_json()["reason"] and row["reason"].startswith("no rule matched")
    assert [v["rule"] for v in row["verdicts"]][:2] == ["main-src", "main-docs"]
    assert all(v["matched"] is False for v in row["verdicts"])
    assert row["jobs"] == []


def test_a_repo_no_rule_names_stores_the_nearest_rules(app_store):
    app, store = app_store
    resp = post(app, "d-far", repo="acme/apx")
    assert resp.status_code == 200
    row = store.get_delivery("d-far")
    assert row["outcome"] == "no_match"
    assert row["reason"].startswith("no rule names this repository; nearest: ")
    assert row["verdicts"] and all(v["matched"] is False for v in row["verdicts"])
    assert {v["rule"] for v in row["verdicts"]} <= {"main-src", "main-docs", "other-repo"}


def test_an_ignored_delivery_stores_its_reason(app_store):
    app, store = app_store
    resp = post(app, "d-notes", ref="refs/notes/commits")
    assert resp.status_code == 200
    row = store.get_delivery("d-notes")
    assert (row["outcome"], row["reason"], row["verdicts"], row["event"]) == (
        "ignored", "ref 'refs/notes/commits' is neither a branch nor a tag", [], None)


@pytest.mark.parametrize("sent, stored", [
    ("x" * 300, "x" * 200),
    ("x" * 200, "x" * 200),
    ("tab\there", "tab\\there"),
    ("bell\x07" + "y" * 300, ("bell\\x07" + "y" * 300)[:200]),
])
def test_the_host_delivery_id_is_clipped_and_printable(app_store, sent, stored):
    app, store = app_store
    resp = post(app, sent)
    assert resp.status_code == 202
    assert resp.get_json()["delivery"] == stored
    assert store.get_delivery(stored)["delivery"] == stored


def test_without_a_delivery_id_the_bridge_names_one(app_store):
    app, store = app_store
    resp = post(app, None)
    assert resp.status_code == 202
    delivery = resp.get_json()["delivery"]
    assert delivery.startswith("bridge-") and len(delivery) == len("bridge-") + 36
    assert store.get_delivery(delivery)["outcome"] == "matched"


def test_kept_headers_are_clipped_and_secrets_dropped(app_store):
    app, store = app_store
    body = json.dumps({"ref": "refs/heads/main", "before": A, "after": B,
                       "repository": {"full_name": "acme/api"}, "commits": []}).encode()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-h", "Content-Type": "application/json",
               "User-Agent": "GitHub-Hookshot/" + "z" * 600, "X-Api-Key": "proxy-secret",
               **sign_github(body, GITHUB_SECRET)}
    assert app.test_client().post("/hooks/github", data=body, headers=headers).status_code == 202
    kept = {k.lower(): v for k, v in store.get_delivery("d-h")["headers"].items()}
    assert kept["user-agent"] == ("GitHub-Hookshot/" + "z" * 600)[:512]
    assert kept["x-github-delivery"] == "d-h"
    assert not set(kept) & {"x-hub-signature-256", "x-api-key"}
