"""Commit-status test parts shared by the status tests: tokens and env, a `status()` row builder, the
GitHub/GitLab API stand-in fixtures, `rules()` (a config from text) and `Setup` (a real store, Jenkins
stand-in target, GitHub stand-in and an injected clock) with its fixture."""
from __future__ import annotations

import textwrap
import time
from dataclasses import replace

import pytest

from bridge.config.load import load_config
from bridge.dispatch.loop import Dispatcher
from bridge.dispatch.statuses import Feedback, StatusPoster
from bridge.events import Commit, Event
from bridge.policies import FollowPolicy, RetryPolicy
from bridge.store import NewStatus
from bridge.targets.jenkins import JenkinsTarget
from helpers.standins.github import GitHubAPIStandin
from helpers.standins.gitlab import GitLabAPIStandin
from helpers.standins.jenkins import JenkinsStandin
from helpers.store import Clock, new_delivery, new_job


SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
GH_TOKEN = "ghp_feedbacktest0000000000000000000000001"
GL_TOKEN = "glpat-feedbacktest000001"
ENV = {"GH_SECRET": "s3cret", "GL_SECRET": "t0ken", "GH_STATUS_TOKEN": GH_TOKEN,
       "GL_STATUS_TOKEN": GL_TOKEN}


def status(state="pending", *, repo="acme/api", sha=SHA, description="queued", context="bridge/build",
           ref="main", url=None, provider="github", key=None, job_id=1, rank=0) -> NewStatus:
    return NewStatus(key=key or f"job:{job_id}:{rank}", delivery_id="d-1", job_id=job_id, rule="build",
                     source=provider, provider=provider, repo=repo, sha=sha, ref=ref, context=context,
                     rank=rank, state=state, description=description, target_url=url)


@pytest.fixture
def github():
    with GitHubAPIStandin(GH_TOKEN) as s:
        yield s


@pytest.fixture
def gitlab():
    with GitLabAPIStandin(GL_TOKEN) as s:
        yield s


def rules(text: str, tmp_path, environ=ENV):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path, environ=environ)


DISPATCH_RULES = """\
sources:
  github:
    provider: github
    secrets: ["${{env:GH_SECRET}}"]
    report: {{token: "${{env:GH_STATUS_TOKEN}}", api_url: "{api}"}}
targets:
  ci: {{kind: jenkins, url: "{jenkins}", user: bridge, token: "${{env:JENKINS_TOKEN}}"}}
rules:
  - name: build
    on: {{branches: [main]}}
    run: {{target: ci, job: api/build, delay: 0}}
  - name: docs
    report_skipped: true
    context: ci/docs
    on: {{branches: [main], paths: ["docs/**"]}}
    run: {{target: ci, job: api/build, delay: 0}}
  - name: quiet-skip
    on: {{branches: [main], paths: ["docs/**"]}}
    run: {{target: ci, job: api/build, delay: 0}}
  - name: silent
    report: false
    on: {{branches: [silent]}}
    run: {{target: ci, job: api/build, delay: 0}}
"""


@pytest.fixture
def jenkins():
    s = JenkinsStandin(quiet_period=0.0, build_duration=60.0)
    s.add_job("api/build", ["BRIDGE_DELIVERY"])
    s.add_job("api/broken", ["BRIDGE_DELIVERY"], result="FAILURE")
    with s:
        yield s


class Setup:
    """A real store, a Jenkins target on the stand-in, the GitHub stand-in, an injected clock."""

    def __init__(self, tmp_path, jenkins, github, db, **follow):
        self.clock = Clock(time.time())
        self.jenkins, self.github, self.store = jenkins, github, db
        self.config = rules(DISPATCH_RULES.format(api=github.url, jenkins=jenkins.url.rstrip("/")),
                            tmp_path, {**ENV, "JENKINS_TOKEN": jenkins.users["bridge"]})
        self.target = JenkinsTarget("ci", self.config.targets["ci"].options, sleep=jenkins.advance,
                                    now=jenkins.now, queue_wait=0.5)
        self.feedback = Feedback(self.config)
        self.follow = FollowPolicy(**{"interval": 2.0, "max_interval": 10.0, **follow})

    def dispatcher(self, owner="d1", **kw) -> Dispatcher:
        kw.setdefault("decide_paths", None)
        return Dispatcher(self.store, {"ci": self.target}, {"ci": RetryPolicy()}, owner=owner,
                          now=self.clock, sleep=self.clock.sleep, rand=lambda: 0.5,
                          feedback=self.feedback, follow=self.follow, **kw)

    def push(self, delivery="d-1", *, ref="refs/heads/main", files=("docs/index.md",), rule="build",
             request=None, needs_files=False, message=""):
        """A delivery with the verdicts of the config's own rules, and a job of `rule`."""
        event = Event(provider="github", source="github", delivery_id=delivery, kind="push",
                      repo="acme/api", ref=ref, ref_name=ref.split("/", 2)[2], before="1" * 40,
                      after=SHA, sha=SHA, commits=(Commit(id=SHA, modified=tuple(files)),),
                      head_message=message)
        verdicts = [v.to_dict() for v in self.config.ruleset.match(event)]
        d = replace(new_delivery(delivery, received_at=self.clock()), event=event,
                    verdicts=verdicts)
        job = new_job(rule, "ci", "jenkins", **(request or {"job": "api/build", "delay": 0}),
                      needs_files=needs_files, path_filter={"paths": ["docs/**"]} if needs_files else None)
        return self.store.ingest(d, [job] if rule else []).job_ids

    def poster(self) -> StatusPoster:
        return StatusPoster(self.store, self.feedback, owner="p", now=self.clock, rand=lambda: 0.5,
                            lookback=60.0)

    def post_all(self, poster):
        poster.scan_once()
        while poster.post_once():
            pass


@pytest.fixture
def setup(tmp_path, jenkins, github, open_store):
    return Setup(tmp_path, jenkins, github, open_store())
