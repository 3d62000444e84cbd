"""The dispatcher's reconcile (`Periodic`): once per `settings.reconcile.interval` on a clock the
test moves, not at all with `enabled: false`, later when the host's rate limit says so, and a
refusal remembered across a rules reload (one warning, not one per interval)."""
from __future__ import annotations

import time
from dataclasses import replace

from bridge.dispatch.reconcile import Periodic
from helpers.reconcile import setup  # noqa: F401  (fixture)


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def deliveries_calls(api) -> int:
    return len([r for r in api.requests if r.path.split("?")[0].endswith("/deliveries")])


def test_it_runs_once_per_interval(setup):
    api, bridge, hook, store, config = setup(settings="reconcile: {interval: 60s}")
    clock = Clock()
    periodic = Periodic(lambda: config, store, "me", now=clock)
    assert periodic.tick() is not None and deliveries_calls(api) == 1
    clock.t += 30
    assert periodic.tick() is None and deliveries_calls(api) == 1
    clock.t += 31
    assert periodic.tick() is not None and deliveries_calls(api) == 2


def test_enabled_false_never_asks_the_host(setup):
    api, bridge, hook, store, config = setup(settings="reconcile: {enabled: false}")
    clock = Clock()
    periodic = Periodic(lambda: config, store, "me", now=clock)
    for _ in range(3):
        assert periodic.tick() is None
        clock.t += 3600
    assert api.requests == []


def test_a_rate_limit_puts_the_next_run_after_its_reset(setup):
    api, bridge, hook, store, config = setup(settings="reconcile: {interval: 60s}")
    api.hooks.rate_remaining = 0
    clock = Clock(t=time.time())     # the stand-in's reset is on the real clock
    periodic = Periodic(lambda: config, store, "me", now=clock)
    assert periodic.tick().wait > 3000
    clock.t += 120
    assert periodic.tick() is None and len(api.requests) == 1


def test_a_refusal_is_remembered_across_a_reload(setup):
    api, bridge, hook, store, config = setup(token_env="GH_LIMITED", settings="reconcile: {interval: 60s}")
    current = {"config": config}
    clock = Clock()
    periodic = Periodic(lambda: current["config"], store, "me", now=clock)
    assert len(periodic.tick().warnings) == 1
    current["config"] = replace(config, version="reloaded")
    clock.t += 61
    report = periodic.tick()
    assert report is not None and report.warnings == []
    assert len([r for r in api.requests if "/hooks/" in r.path]) == 1
