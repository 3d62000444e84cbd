"""Reconcile against the GitHub API stand-in over real HTTP, with the bridge's web app served on a
real port: failed deliveries redelivered and built once, tags pushed with no webhook synthesized,
races with real deliveries deduplicated, a token without the scope warned about once."""
from __future__ import annotations

from bridge.dispatch.reconcile import Periodic, Reconciler
from bridge.metrics import Metrics
from helpers.process import wait_for
from helpers.reconcile import (API_TOKEN, REPO, ServedBridge, chain, free_bridge_port, github_host,
                               jobs_by_rule, rules_text, setup)  # noqa: F401  (fixture)
from helpers.rules import GITHUB_SECRET


def test_twenty_pushes_that_failed_at_the_host_are_redelivered_and_build_once(setup):
    api, bridge, hook, store, config = setup(start=False)
    pushes = chain(20)
    attempts = [api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)
                for after, body in pushes]
    assert {a.status_code for a in attempts} == {0}          # the bridge was down
    bridge.start()
    metrics = Metrics()
    report = Reconciler(config, store, metrics=metrics).run()
    assert [f.action for f in report.found] == ["redelivered"] * 20 and not report.warnings
    api.hooks.wait_sent(20)
    wait_for(lambda: len(jobs_by_rule(store).get("build", [])) == 20, what="20 builds")
    again = Reconciler(config, store).run()
    assert again.found == [] and not again.warnings
    rows = store.list_deliveries(limit=100)
    assert sorted(r["delivery"] for r in rows) == sorted(a.guid for a in attempts)
    assert {r["via"] for r in rows} == {"redelivery"}
    assert len(jobs_by_rule(store)["build"]) == 20
    text = metrics.render()[0].decode()
    assert 'bridge_recovered_deliveries_total{reason="failed_delivery",source="github"} 20.0' in text
    assert api.problems == []


def test_a_dry_run_asks_nothing_and_stores_nothing(setup):
    api, bridge, hook, store, config = setup(start=False)
    after, body = chain(1)[0]
    api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)
    bridge.start()
    report = Reconciler(config, store).run(dry_run=True)
    assert [f.action for f in report.found] == ["would_redeliver"]
    assert api.hooks.redeliveries == [] and store.list_deliveries() == []
    assert store.get_mark(f"log:github:{REPO} hook {hook}") is None


def test_a_delivery_the_bridge_refused_with_a_4xx_is_not_asked_for_again(setup):
    api, bridge, hook, store, config = setup()
    hook_ = next(h for h in api.hooks.hooks.values() if h.id == hook)
    hook_.secret = "a-wrong-secret"
    after, body = chain(1)[0]
    refused = api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)
    assert refused.status_code == 401
    progress = []
    report = Reconciler(config, store, progress=progress.append).run()
    assert report.found == [] and api.hooks.redeliveries == []
    assert "1 refused by the bridge (4xx: not asked again)" in progress[0]


def test_the_delivery_log_is_read_page_by_page_with_the_cursor(setup):
    api, bridge, hook, store, config = setup()
    for after, body in chain(130):
        api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)
    api.hooks.push(REPO, chain(1)[0][1], hook_id=hook)   # delivered, then lost nowhere: all stored
    bridge.stop()
    after, body = chain(1)[0]
    failed = api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)
    bridge.start()
    report = Reconciler(config, store).run()
    assert [(f.action, f.detail.split()[0]) for f in report.found] == [("redelivered", failed.guid)]
    pages = [r.path for r in api.requests if "/deliveries" in r.path and r.method == "GET"]
    assert len(pages) == 2 and "cursor=v1_100" in pages[1]


def test_five_tags_pushed_at_once_without_a_webhook_each_build_once(setup):
    api, bridge, hook, store, config = setup(watch=f"watch: [{REPO}]")
    api.hooks.move(REPO, branch="main", sha="a" * 40)
    first = Reconciler(config, store).run()
    assert first.found == [] and store.get_mark(f"watch:github:{REPO}") == {"refs/heads/main": "a" * 40}
    for i in range(5):
        api.hooks.move(REPO, tag=f"v1.{i}", sha=f"{i + 1}" * 40, commit="b" * 40)
    report = Reconciler(config, store).run()
    assert sorted((f.ref, f.reason, f.action) for f in report.found) == [
        (f"refs/tags/v1.{i}", "new_tag", "ingested") for i in range(5)]
    assert len(jobs_by_rule(store)["tag"]) == 5 and "build" not in jobs_by_rule(store)
    rows = store.list_deliveries()
    assert {r["via"] for r in rows} == {"reconcile"}
    shown = store.get_delivery(rows[0]["delivery"])
    assert shown["event"]["sha"] == "b" * 40 and shown["event"]["before"] == "0" * 40
    assert Reconciler(config, store).run().found == []
    assert len(jobs_by_rule(store)["tag"]) == 5
    # Each annotated tag was peeled once, when it was acted on; not at every run.
    assert len([r for r in api.requests if "/git/tags/" in r.path]) == 5


def test_a_branch_ahead_of_the_deliveries_gets_one_synthesized_push_from_the_last_known_sha(setup):
    paths = '  - name: src\n    on: {repo: "**", branches: [main], paths: ["src/**"]}\n    run: {target: mem}\n'
    api, bridge, hook, store, config = setup(watch=f"watch: [{{repo: {REPO}, branches: [main]}}]", extra=paths)
    (a1, body1), (a2, body2), (a3, _) = chain(3)
    api.hooks.push(REPO, body1, hook_id=hook, branch="main", after=a1)    # delivered: known
    Reconciler(config, store).run()                                        # baseline
    api.hooks.move(REPO, branch="main", sha=a3)                            # two pushes, no webhook
    api.hooks.move(REPO, branch="other", sha=a2)                           # not watched
    report = Reconciler(config, store).run()
    assert [(f.ref, f.reason, f.action) for f in report.found] == [("refs/heads/main", "branch_head", "ingested")]
    synthesized = next(d for d in store.list_deliveries() if d["via"] == "reconcile")
    event = store.get_delivery(synthesized["delivery"])["event"]
    assert (event["before"], event["after"], event["commits"]) == (a1, a3, [])
    assert len(jobs_by_rule(store)["build"]) == 2
    # The commits are unknown: the path filter is left to the mirror, before the build.
    jobs = store.get_delivery(synthesized["delivery"])["jobs"]
    assert {j["rule"]: j["needs_files"] for j in jobs} == {"build": False, "src": True}


def test_a_real_delivery_racing_a_synthesized_push_builds_once(setup):
    api, bridge, hook, store, config = setup(watch=f"watch: [{REPO}]")
    (a1, body1), (a2, body2) = chain(2)
    api.hooks.push(REPO, body1, hook_id=hook, branch="main", after=a1)
    Reconciler(config, store).run()
    api.hooks.move(REPO, branch="main", sha=a2)          # the host moved; its webhook is late
    assert [f.action for f in Reconciler(config, store).run().found] == ["ingested"]
    late = api.hooks.push(REPO, body2, hook_id=hook, branch="main", after=a2)
    assert late.status_code == 200                       # "the same push was already accepted"
    assert len(jobs_by_rule(store)["build"]) == 2


def test_a_reconcile_racing_a_manual_redelivery_builds_once(setup):
    api, bridge, hook, store, config = setup(start=False)
    after, body = chain(1)[0]
    failed = api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)
    bridge.start()
    Reconciler(config, store).run()
    api.hooks.redeliver_by_hand(REPO, hook, failed)                         # someone clicks it too
    api.hooks.wait_sent(2)
    assert len(jobs_by_rule(store)["build"]) == 1
    assert Reconciler(config, store).run().found == []


def test_a_token_without_the_hook_scope_gets_one_clear_warning_not_a_loop(setup, caplog):
    api, bridge, hook, store, config = setup(token_env="GH_LIMITED", start=False)
    after, body = chain(1)[0]
    api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)
    periodic = Periodic(lambda: config, store, "me", now=iter(range(0, 100000, 700)).__next__)
    reports = [periodic.tick() for _ in range(5)]
    warnings = [w for r in reports if r for w in r.warnings]
    assert len(warnings) == 1
    assert "403 Resource not accessible by personal access token" in warnings[0]
    assert "Webhooks" in warnings[0] and "Not asked again for 6h" in warnings[0]
    assert len([r for r in api.requests if "/hooks/" in r.path]) == 1
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


def test_a_hook_the_token_cannot_see_is_a_404_named_once(setup):
    api, bridge, hook, store, config = setup()
    next(h for h in api.hooks.hooks.values() if h.id == hook).visible = False
    report = Reconciler(config, store).run()
    assert len(report.warnings) == 1 and "404 Not Found (the hook id is wrong" in report.warnings[0]


def test_the_rate_limit_stops_the_run_and_says_how_long(setup):
    api, bridge, hook, store, config = setup()
    api.hooks.rate_remaining = 0
    report = Reconciler(config, store).run()
    assert report.wait is not None and 3500 <= report.wait <= 3600
    assert len(report.warnings) == 1 and "rate limited" in report.warnings[0]


def test_the_last_hundred_requests_of_the_rate_limit_are_left_to_commit_statuses(setup):
    api, bridge, hook, store, config = setup()
    api.hooks.rate_remaining = 100                  # the answer says 99 left
    report = Reconciler(config, store).run()
    assert len(report.warnings) == 1 and "99 requests of the rate limit left" in report.warnings[0]
    assert report.wait is not None and report.wait > 3000
    assert api.hooks.rate_remaining == 99           # one request, then it stopped


def test_one_instance_at_a_time_runs_it(setup):
    api, bridge, hook, store, config = setup()
    first = Periodic(lambda: config, store, "host-a", now=lambda: 10.0)
    second = Periodic(lambda: config, store, "host-b", now=lambda: 11.0)
    assert first.tick() is not None
    assert second.tick() is None                     # the lease is host-a's for one interval
    assert store.lease_holder("reconcile", now=12.0) == "host-a"
    later = Periodic(lambda: config, store, "host-b", now=lambda: 10.0 + config.settings.reconcile.interval + 1)
    assert later.tick() is not None                  # expired: host-b takes it over


def test_an_organization_hooks_log_is_read_and_its_repositories_wait_for_redeliveries(make_app, monkeypatch):
    monkeypatch.setenv("GH_API_TOKEN", API_TOKEN)
    with github_host() as api:
        port = free_bridge_port()
        hook = api.hooks.add_hook(f"http://127.0.0.1:{port}/hooks/github", GITHUB_SECRET, org="f110")
        text = rules_text(api.url, hook, watch=f"watch: [{REPO}]").replace(
            f"{{repo: {REPO}, id: {hook}}}", f"{{org: f110, id: {hook}}}")
        app, store = make_app(text)
        config = app.extensions["bridge"].config
        after, body = chain(1)[0]
        api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)     # nobody listening
        bridge = ServedBridge(app, port).start()
        api.hooks.release.clear()                  # the redelivery takes its time
        try:
            report = Reconciler(config, store).run()
            assert [(f.repo, f.action) for f in report.found] == [("-", "redelivered")]
            assert any(f"/orgs/f110/hooks/{hook}/deliveries" in r.path for r in api.requests)
            # An org hook's redelivery may be for any repository: the watch waits a run.
            assert store.get_mark(f"watch:github:{REPO}") is None
            api.hooks.release.set()
            api.hooks.wait_sent(1)
            wait_for(lambda: len(jobs_by_rule(store).get("build", [])) == 1, what="the build")
            assert Reconciler(config, store).run().found == []
            assert store.get_mark(f"watch:github:{REPO}") == {"refs/heads/main": after}
        finally:
            bridge.stop()
            api.hooks.join()
