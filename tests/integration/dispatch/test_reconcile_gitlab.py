"""Reconcile against the GitLab API stand-in over real HTTP: hook events that failed are resent
(17.4+) within GitLab's 5 a minute, or ingested from the logged payload where resend is missing
(17.3); tags pushed with no hook event are synthesized; a token without the scope is named once."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from bridge.dispatch.reconcile import Reconciler
from helpers.payloads import load_payload
from helpers.process import wait_for
from helpers.reconcile import ServedBridge, free_bridge_port
from helpers.rules import GITLAB_TOKEN
from helpers.standins.gitlab import GitLabAPIStandin
from helpers.standins.gitlab_hooks import GitLabHooks

PROJECT = "mike/diaspora"
API_TOKEN = "glpat-reconcile000000000000"
LIMITED = "glpat-readrepo0000000000000"


def rules(api_url: str, hook: int, token_env: str) -> str:
    return textwrap.dedent(f"""\
        settings: {{durability: normal}}
        sources:
          gitlab:
            provider: gitlab
            secrets: ["${{env:GL_TOKEN}}"]
            reconcile:
              token: "${{env:{token_env}}}"
              api_url: {api_url}
              hooks: [{{project: {PROJECT}, id: {hook}}}]
            watch: [{{repo: {PROJECT}, tags: ["v*"]}}]
        targets:
          mem: {{kind: memory}}
        rules:
          - name: build
            on: {{repo: "**", branches: ["**"]}}
            run: {{target: mem}}
          - name: tag
            on: {{repo: "**", tags: ["**"]}}
            run: {{target: mem, parameters: {{TAG: "${{tag}}"}}}}
        """)


@pytest.fixture
def setup(make_app, monkeypatch):
    monkeypatch.setenv("GL_API", API_TOKEN)
    monkeypatch.setenv("GL_LIMITED", LIMITED)
    api = GitLabAPIStandin(token=API_TOKEN)
    bridges = []
    with api:
        def make(*, version="17.4", token_env="GL_API"):
            api.hooks = GitLabHooks(api, limited=[LIMITED], version=version)
            port = free_bridge_port()
            hook = api.hooks.add_hook(PROJECT, f"http://127.0.0.1:{port}/hooks/gitlab", GITLAB_TOKEN)
            app, store = make_app(rules(api.api_url, hook, token_env))
            bridge = ServedBridge(app, port)
            bridges.append(bridge)
            return api, bridge, hook, store, app.extensions["bridge"].config
        yield make
        for b in bridges:
            b.stop()
        if api.hooks:
            api.hooks.join()


def pushes(count: int) -> list[dict]:
    body, _ = load_payload("gitlab/push_hook__docs.json")
    template = json.loads(body)
    before, out = template["before"], []
    for _ in range(count):
        after = os.urandom(20).hex()
        out.append({**template, "before": before, "after": after, "checkout_sha": after})
        before = after
    return out


def builds(store, rule="build") -> int:
    return sum(1 for d in store.list_deliveries(limit=500) for j in d["jobs"] if j["rule"] == rule)


def test_failed_hook_events_are_resent_five_a_minute_and_build_once(setup):
    api, bridge, hook, store, config = setup()
    events = [api.hooks.push(PROJECT, p, hook_id=hook) for p in pushes(6)]
    assert {e.status for e in events} == {"internal error"}
    bridge.start()
    report = Reconciler(config, store).run()
    assert [f.action for f in report.found] == ["redelivered"] * 5
    assert report.wait == 60 and "rate limited" in report.warnings[0]
    api.hooks.wait_resent(5)
    wait_for(lambda: builds(store) == 5, what="5 builds")
    api.hooks.hooks[(PROJECT, hook)].resends.clear()          # a minute later
    assert [f.action for f in Reconciler(config, store).run().found] == ["redelivered"]
    api.hooks.wait_resent(6)
    wait_for(lambda: builds(store) == 6, what="6 builds")
    assert Reconciler(config, store).run().found == []
    assert {d["via"] for d in store.list_deliveries()} == {"redelivery"}
    assert sorted(d["delivery"] for d in store.list_deliveries()) == \
        sorted(e.headers["Idempotency-Key"] for e in events)


def test_before_17_4_the_logged_payload_is_ingested_and_a_later_retry_is_a_duplicate(setup):
    api, bridge, hook, store, config = setup(version="17.3")
    failed = api.hooks.push(PROJECT, pushes(1)[0], hook_id=hook)
    bridge.start()
    report = Reconciler(config, store).run()
    assert [(f.action, f.detail.split()[0]) for f in report.found] == \
        [("ingested", failed.headers["Idempotency-Key"])]
    assert builds(store) == 1 and store.list_deliveries()[0]["via"] == "reconcile"
    stored = store.get_delivery(failed.headers["Idempotency-Key"])["headers"]
    assert set(stored) == {"Content-Type", "X-Gitlab-Event", "Idempotency-Key", "X-Gitlab-Event-UUID",
                           "User-Agent"}                     # never the (redacted) token
    retry = api.hooks.retry(PROJECT, hook, failed)              # GitLab's own retry, same key
    assert retry.status == "200" and builds(store) == 1
    assert Reconciler(config, store).run().found == []


def test_tags_pushed_without_a_hook_event_are_synthesized_once_each(setup):
    api, bridge, hook, store, config = setup()
    bridge.start()
    assert Reconciler(config, store).run().found == []           # baseline: no tags yet
    for i in range(4):                                           # GitLab sends none for > 3 refs
        api.hooks.tags.setdefault(PROJECT, {})[f"v2.{i}"] = (f"{i + 1}" * 40, "c" * 40)
    api.hooks.tags[PROJECT]["nightly"] = ("d" * 40, "d" * 40)    # not watched (v* only)
    report = Reconciler(config, store).run()
    assert sorted((f.ref, f.action) for f in report.found) == [(f"refs/tags/v2.{i}", "ingested") for i in range(4)]
    assert builds(store, "tag") == 4 and builds(store) == 0
    event = store.get_delivery(store.list_deliveries()[0]["delivery"])["event"]
    assert event["sha"] == "c" * 40 and event["kind"] == "tag"
    assert Reconciler(config, store).run().found == []


def test_a_token_without_api_scope_is_named_once(setup):
    api, bridge, hook, store, config = setup(token_env="GL_LIMITED")
    api.hooks.push(PROJECT, pushes(1)[0], hook_id=hook)
    rec = Reconciler(config, store)
    first, second = rec.run(), rec.run()
    assert len(first.warnings) == 1 and second.warnings == []
    assert "403 " in first.warnings[0] and "Maintainer" in first.warnings[0]
    assert len([r for r in api.requests if "/hooks/" in r.path]) == 1
