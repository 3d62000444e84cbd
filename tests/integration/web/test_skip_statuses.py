"""A rule's paths or a skip marker stopped it at ingress: the status poster reports the skip from
the verdict stored with the delivery (its `stopped_by`), through the real app, store and GitHub
API stand-in; a verdict stored before verdicts kept `stopped_by` (an older database) reports the
same."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from bridge.dispatch.statuses import Feedback, StatusPoster
from bridge.store.schema import deliveries
from helpers.payloads import sign_github
from helpers.rules import GITHUB_SECRET
from helpers.statuses import GH_TOKEN, github  # noqa: F401  (fixture)

A, B = "a" * 40, "b" * 40

RULES = """\
sources:
  github:
    provider: github
    secrets: ["${{env:GH_SECRET}}"]
    report: {{token: "${{env:GH_STATUS_TOKEN}}", api_url: "{api}"}}
targets:
  mem: {{kind: memory}}
rules:
  - name: docs
    report_skipped: true
    context: ci/docs
    on: {{repo: acme/api, branches: [main], paths: ["docs/**"]}}
    run: {{target: mem}}
  - name: not-docs
    report_skipped: true
    context: ci/code
    on: {{repo: acme/api, branches: [main], paths-ignore: ["docs/**"]}}
    run: {{target: mem}}
  - name: releases
    report_skipped: true
    context: ci/releases
    on: {{repo: acme/api, branches: [release]}}
    run: {{target: mem}}
"""


@pytest.fixture
def app(make_app, github, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GH_STATUS_TOKEN", GH_TOKEN)
    app, store = make_app(RULES.format(api=github.url))
    return app, store, app.extensions["bridge"].config


def post(app, delivery: str, *, files, message: str = "change", after: str = B):
    payload = {"ref": "refs/heads/main", "before": A, "after": after, "created": False,
               "repository": {"full_name": "acme/api"}, "pusher": {"name": "octo"},
               "head_commit": {"id": after, "message": message},
               "commits": [{"id": after, "message": message, "added": [], "removed": [],
                            "modified": list(files)}]}
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json",
               "X-GitHub-Delivery": delivery, **sign_github(body, GITHUB_SECRET)}
    return app.test_client().post("/hooks/github", data=body, headers=headers)


def posted(store, config, github) -> list[tuple[str, str, str]]:
    poster = StatusPoster(store, Feedback(config), owner="p", lookback=3600.0)
    try:
        poster.scan_once()
        while poster.post_once():
            pass
    finally:
        poster.shutdown()
    return sorted((s.context, s.state, s.description) for s in github.statuses)


def test_paths_stopped_the_rule_at_ingress_reported_as_skipped(app, github):  # noqa: F811
    app, store, config = app
    assert post(app, "d-code", files=("src/app.py",)).status_code == 202
    [docs] = [v for v in store.get_delivery("d-code")["verdicts"] if v["rule"] == "docs"]
    assert docs["stopped_by"] == {"clause": "paths", "value": "1 file changed", "patterns": ["docs/**"]}
    # The rule on another branch was stopped by its branches: no skip to report.
    assert posted(store, config, github) == [
        ("ci/code", "pending", "queued"), ("ci/docs", "success", "skipped: no matching paths")]


def test_a_skip_marker_reported_with_its_marker(app, github):  # noqa: F811
    app, store, config = app
    assert post(app, "d-skip", files=("docs/a.md",), message="typo\n\n[skip ci]").status_code == 200
    assert posted(store, config, github) == [
        ("ci/code", "success", "skipped: [skip ci] in the commit message"),
        ("ci/docs", "success", "skipped: [skip ci] in the commit message")]


@pytest.mark.parametrize("message, files", [("typo [no ci]", ("docs/a.md",)), ("change", ("docs/a.md",))])
def test_a_verdict_stored_without_stopped_by_reports_the_same(app, github, message, files):  # noqa: F811
    app, store, config = app
    post(app, "d-new", files=files, message=message)
    new = posted(store, config, github)
    github.statuses.clear()
    post(app, "d-old", files=files, message=message, after="c" * 40)    # the same verdicts
    with store.engine.begin() as conn:                           # as an older bridge stored them
        old = [{k: v for k, v in verdict.items() if k != "stopped_by"}
               for verdict in store.get_delivery("d-old")["verdicts"]]
        conn.execute(update(deliveries).where(deliveries.c.id == "d-old").values(verdicts=old))
    assert new and posted(store, config, github) == new
