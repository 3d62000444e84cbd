"""The reply to a delivery whose content was already accepted under another delivery id names
what was the same: a pull request change (number, action, head, time) or a push (repo, ref,
before, after). Real payloads, signed, through the app into a real SQLite store."""
from __future__ import annotations

import logging

import pytest
from helpers.payloads import load_payload, sign_github
from helpers.rules import GITHUB_SECRET

RULES = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
targets:
  mem: {kind: memory}
rules:
  - name: all
    on: {repo: "**", pull_request: {}}
    run: {target: mem}
  - name: pushes
    on: {repo: "**"}
    run: {target: mem}
"""


def post(app, body: bytes, event: str, delivery: str):
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
               **sign_github(body, GITHUB_SECRET)}
    return app.test_client().post("/hooks/github", data=body, headers=headers)


@pytest.mark.parametrize("rel, event, reason", [
    ("github/pull_request__octokit-opened.json", "pull_request",
     "the same pull request change (number, action, head, time) was already accepted"),
    ("github/push__f110-single-commit.json", "push", "the same push (repo, ref, before, after) was already accepted"),
])
def test_the_duplicate_reply_names_what_was_the_same(make_app, caplog, rel, event, reason):
    app, store = make_app(RULES)
    body, _ = load_payload(rel)
    first = post(app, body, event, "first-id")
    with caplog.at_level(logging.INFO, logger="bridge.ingress"):
        again = post(app, body, event, "second-id")
    # The log line says the same as the reply.
    what = reason.split(" (")[0]
    assert [r.getMessage() for r in caplog.records] == [f"{what} already accepted as first-id; no jobs"]
    assert first.status_code == 202, first.get_json()
    assert again.status_code == 200
    assert again.get_json() == {"delivery": "second-id", "duplicate_of": "first-id", "reason": reason}
