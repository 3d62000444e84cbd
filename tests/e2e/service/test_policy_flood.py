"""A small flood through a real `cibridge serve` against the Jenkins stand-in with `policy:
{max_running: 2, on_newer: coalesce}`: Jenkins never has more than 2 builds running, every
branch's newest push builds, the older ones end superseded (bench/flood.py measures the big one)."""
from __future__ import annotations

import json

import pytest
import requests

from helpers.process import wait_for
from helpers.service import job_states, push, start_bridge  # noqa: F401  (fixture)
from helpers.standins.jenkins import JenkinsStandin

RULES = """\
settings: {{durability: normal, lease_seconds: 5, poll_interval: 0.01}}
sources:
  github:
    provider: github
    secrets: ["${{env:GH_SECRET}}"]
targets:
  ci:
    kind: jenkins
    url: "{url}"
    user: bridge
    token: "${{env:JENKINS_TOKEN}}"
    policy: {{max_running: 2, on_newer: coalesce}}
rules:
  - name: build
    on: {{repo: f110/test, branches: ["**"]}}
    run: {{target: ci, job: flood/build, delay: 0, parameters: {{GIT_SHA: "${{sha}}"}}}}
"""


@pytest.mark.slow
def test_a_flood_builds_each_branchs_newest_push_with_at_most_two_running(start_bridge, monkeypatch):
    jenkins = JenkinsStandin(quiet_period=0.0, build_duration=0.5)
    jenkins.add_job("flood/build", ["GIT_SHA", "BRIDGE_DELIVERY"])
    with jenkins:
        monkeypatch.setenv("JENKINS_TOKEN", jenkins.users["bridge"])
        bridge = start_bridge(RULES.format(url=jenkins.url.rstrip("/")))
        newest = {}
        session = requests.Session()
        for i in range(40):
            branch = f"b{i % 4}"
            _, body, headers = push(branch=branch)
            assert session.post(f"{bridge.url}/hooks/github", data=body, headers=headers,
                                timeout=10).status_code == 202
            newest[branch] = json.loads(body)["after"]

        def drained():
            states = job_states(bridge)
            building = [b for b in jenkins.builds() if jenkins.now() < b.finish_at]
            return not (states.get("queued") or states.get("running") or states.get("started")
                        or building)

        wait_for(drained, timeout=120, what="every job ended and every build finished")
        states = job_states(bridge)
        built = {r.query["GIT_SHA"][-1] for r in jenkins.posts() if r.status == 201}
        assert jenkins.peak_running() <= 2
        assert set(newest.values()) <= built                 # every branch's newest push built
        assert states.get("superseded", 0) + states.get("succeeded", 0) == 40
        assert states["succeeded"] == len(jenkins.builds()) < 40
