"""Reconcile end to end: a real `cibridge serve` whose dispatcher reconciles every second against
the GitHub API stand-in. The bridge is down while 20 pushes fail at the host; it starts, and every
push builds exactly once; then 5 tags are pushed at once with no webhook, and each tag rule runs
once; `cibridge reconcile --dry-run` finds nothing left; /metrics counts what was recovered."""
from __future__ import annotations

import collections
import subprocess
import sys
import textwrap

import pytest
import requests

from helpers.process import BridgeProcess, wait_for
from helpers.reconcile import API_TOKEN, REPO, chain, github_host
from helpers.rules import GITHUB_SECRET, SECRET_ENV
from helpers.service import RECORD, db

ENV = {**SECRET_ENV, "GH_API_TOKEN": API_TOKEN}


def rules(api_url: str, hook: int, builds) -> str:
    run = f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}"
    return textwrap.dedent(f"""\
        settings:
          durability: normal
          lease_seconds: 2
          reconcile: {{interval: 1s}}
        sources:
          github:
            provider: github
            secrets: ["${{env:GH_SECRET}}"]
            reconcile:
              token: "${{env:GH_API_TOKEN}}"
              api_url: {api_url}
              hooks: [{{repo: {REPO}, id: {hook}}}]
            watch: [{{repo: {REPO}, tags: ["v*"]}}]
        targets:
          local:
            kind: exec
            env: {{BUILDS: "{builds}"}}
        rules:
          - name: build
            on: {{repo: {REPO}, branches: ["**"]}}
            run: {run}
          - name: tag
            on: {{repo: {REPO}, tags: ["v*"]}}
            run: {run}
        """)


def runs_by_rule(bridge, builds) -> dict[str, collections.Counter]:
    """rule -> job id -> how many times its build ran."""
    if not builds.exists():
        return {}
    ran = collections.Counter(int(line.split()[0]) for line in builds.read_text().splitlines() if line)
    with db(bridge) as conn:
        rule_of = dict(conn.execute("SELECT id, rule FROM jobs").fetchall())
    out: dict[str, collections.Counter] = {}
    for job, n in ran.items():
        out.setdefault(rule_of[job], collections.Counter())[job] = n
    return out


def mark(bridge, key: str) -> bool:
    with db(bridge) as conn:
        return conn.execute("SELECT 1 FROM reconcile_marks WHERE key = ?", (key,)).fetchone() is not None


@pytest.mark.slow
def test_pushes_lost_while_the_bridge_was_down_and_tags_without_a_webhook_build_once(tmp_path):
    builds = tmp_path / "builds.log"
    with github_host() as api:
        bridge = BridgeProcess(tmp_path / "bridge", "", env=ENV)
        hook = api.hooks.add_hook(f"{bridge.url}/hooks/github", GITHUB_SECRET, repo=REPO)
        bridge.rules.write_text(rules(api.url, hook, builds), encoding="utf-8")
        lost = [api.hooks.push(REPO, body, hook_id=hook, branch="main", after=after)
                for after, body in chain(20)]
        assert {a.status_code for a in lost} == {0}             # nobody listening
        try:
            bridge.start(timeout=120)   # a loaded machine starts gunicorn slowly
            wait_for(lambda: sum(runs_by_rule(bridge, builds).get("build", {}).values()) >= 20,
                     timeout=120, what="20 builds")
            wait_for(lambda: mark(bridge, f"watch:github:{REPO}"), timeout=60, what="the watch's baseline")
            for i in range(5):
                api.hooks.move(REPO, tag=f"v3.{i}", sha=f"{i + 1}" * 40, commit="e" * 40)
            wait_for(lambda: sum(runs_by_rule(bridge, builds).get("tag", {}).values()) >= 5,
                     timeout=120, what="5 tag builds")
            seen = len([r for r in api.requests if "/deliveries" in r.path])
            wait_for(lambda: len([r for r in api.requests if "/deliveries" in r.path]) >= seen + 3,
                     timeout=60, what="three more reconcile runs")
            runs = runs_by_rule(bridge, builds)
            metrics = requests.get(f"{bridge.url}/metrics", timeout=10).text
            dry = subprocess.run([sys.executable, "-m", "bridge", "reconcile", "--dry-run", "--rules",
                                  str(bridge.rules), "--state-dir", str(bridge.state)],
                                 capture_output=True, text=True, env=bridge.env, timeout=60)
        finally:
            bridge.stop()
        api.hooks.join()
    assert len(runs["build"]) == 20 and set(runs["build"].values()) == {1}
    assert len(runs["tag"]) == 5 and set(runs["tag"].values()) == {1}
    with db(bridge) as conn:
        stored = dict(conn.execute("SELECT id, via FROM deliveries").fetchall())
    assert {a.guid for a in lost} <= set(stored) and len(stored) == 25
    assert collections.Counter(stored.values()) == {"redelivery": 20, "reconcile": 5}
    assert 'bridge_recovered_deliveries_total{reason="failed_delivery",source="github"} 20.0' in metrics
    assert 'bridge_recovered_deliveries_total{reason="new_tag",source="github"} 5.0' in metrics
    assert dry.returncode == 0, dry.stderr
    assert "0 found, nothing done (--dry-run)" in dry.stdout
    assert f"github {REPO} hook {hook}: " in dry.stdout and api.problems == []
