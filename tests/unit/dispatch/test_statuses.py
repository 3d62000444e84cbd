"""Commit statuses on GitHub and GitLab: config, the API clients against real HTTP stand-ins, the
status queue in a real store, the dispatcher following Jenkins builds (stand-in), and end to end
with a real `cibridge serve`, the Jenkins stand-in and moto's CodeBuild."""
from __future__ import annotations

import json
import logging
import textwrap
import time
from dataclasses import replace

import pytest

from bridge.config.load import load_config
from bridge.dispatch.loop import Dispatcher
from bridge.dispatch.statuses import Feedback, GitHubStatuses, GitLabStatuses, StatusPoster, final_state
from bridge.errors import ConfigError
from bridge.events import Commit, Event
from bridge.jobs import Run
from bridge.policies import FollowPolicy, RetryPolicy
from bridge.store import NewStatus
from bridge.targets.base import Target
from bridge.targets.jenkins import JenkinsTarget
from helpers.standins.github import GitHubAPIStandin
from helpers.standins.gitlab import GitLabAPIStandin
from helpers.standins.jenkins import JenkinsStandin
from helpers.store import Clock, db_url, new_delivery, new_job, open_store  # noqa: F401

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


# --- configuration -------------------------------------------------------------------------------

def rules(text: str, tmp_path, environ=ENV):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path, environ=environ)


REPORTING = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
    report: {token: "${env:GH_STATUS_TOKEN}"}
  ghes:
    provider: github
    secrets: ["${env:GH_SECRET}"]
    report:
      token: "${env:GH_STATUS_TOKEN}"
      api_url: https://ghe.example.com/api/v3/
      timeout: 3s
      retry: {initial: 1s, give_up_after: 1h}
  gitlab:
    provider: gitlab
    secrets: ["${env:GL_SECRET}"]
    report: {token: "${env:GL_STATUS_TOKEN}"}
  quiet:
    provider: gitlab
    secrets: ["${env:GL_SECRET}"]
targets:
  mem: {kind: memory}
settings:
  follow: {interval: 500ms, max_interval: 30s, give_up_after: 6h, concurrency: 2}
rules:
  - name: build
    on: {branches: [main]}
    run: {target: mem}
  - name: docs
    context: ci/docs
    report_skipped: true
    on: {branches: [main], paths: ["docs/**"]}
    run: {target: mem}
  - name: silent
    report: false
    on: {branches: [main]}
    run: {target: mem}
"""


def test_report_config_defaults_and_overrides(tmp_path):
    config = rules(REPORTING, tmp_path)
    gh, ghes, gl = (config.sources[n].report for n in ("github", "ghes", "gitlab"))
    assert (gh.api_url, gh.token, gh.timeout) == ("https://api.github.com", GH_TOKEN, 10.0)
    assert (ghes.api_url, ghes.timeout) == ("https://ghe.example.com/api/v3", 3.0)
    assert ghes.retry == RetryPolicy(initial=1.0, maximum=300.0, give_up_after=3600.0)
    assert (gl.api_url, gl.token) == ("https://gitlab.com/api/v4", GL_TOKEN)
    assert config.sources["quiet"].report is None
    assert GH_TOKEN not in repr(config.sources["github"]) and GH_TOKEN not in repr(gh)
    assert "report" not in config.sources["github"].options
    assert [(r.context, r.report, r.report_skipped) for r in
            map(config.rule_report, ("build", "docs", "silent"))] == [
        ("bridge/build", True, False), ("ci/docs", True, True), ("bridge/silent", False, False)]
    assert config.settings.follow == FollowPolicy(interval=0.5, max_interval=30.0, give_up_after=21600.0,
                                                  concurrency=2)


def test_report_config_problems_each_with_its_line(tmp_path):
    with pytest.raises(ConfigError) as exc:
        rules("""\
        sources:
          github:
            provider: github
            secrets: ["${env:GH_SECRET}"]
            report:
              token: ghp_literal_token_in_the_file
              api_url: ftp://example.com
              timout: 5
        targets:
          mem: {kind: memory}
        settings:
          follow: {intervall: 1s, concurrency: 0}
        rules:
          - name: a
            context: 42
            report: "no"
            on: {branches: [main]}
            run: {target: mem}
          - name: b
            report: false
            report_skipped: true
            on: {branches: [main]}
            run: {target: mem}
        """, tmp_path)
    assert exc.value.problems == [
        "rules.yaml:6: source 'github' report: 'token' must be a secret reference like "
        "${credential:github-token}",
        "rules.yaml:7: source 'github' report: api_url must be an http:// or https:// URL without "
        "query string, not 'ftp://example.com'",
        "rules.yaml:8: unknown key 'timout' in source 'github' report (did you mean 'timeout'?)",
        "rules.yaml:12: unknown key 'intervall' in settings.follow (did you mean 'interval'?)",
        "rules.yaml:12: settings.follow.concurrency must be a positive integer",
        "rules.yaml:15: rule 'a': context must be a one-line name of at most 255 characters, such as 'ci/a'",
        "rules.yaml:16: rule 'a': report must be true or false",
        "rules.yaml:21: rule 'b': report_skipped: true needs report: true (report: false posts no "
        "status at all)",
    ]
    assert "ghp_literal_token_in_the_file" not in str(exc.value)


def test_a_missing_token_is_named_never_shown(tmp_path):
    with pytest.raises(ConfigError) as exc:
        rules(REPORTING, tmp_path, environ={k: v for k, v in ENV.items() if k != "GL_STATUS_TOKEN"})
    assert exc.value.problems == ["rules.yaml:17: source 'gitlab' report: secret ${env:GL_STATUS_TOKEN}: "
                                  "environment variable GL_STATUS_TOKEN is not set or empty"]


# --- the clients ---------------------------------------------------------------------------------

def test_github_post_sends_the_status_as_github_expects(github):
    client = GitHubStatuses(github.url, GH_TOKEN)
    long = "could not start the build: " + "x" * 200
    assert client.post(status("running", description=long, url="http://ci/job/1/")).outcome == "sent"
    assert client.post(status("canceled", description="build canceled (ABORTED)")).outcome == "sent"
    (first, second) = github.requests
    assert (first.method, first.path) == ("POST", f"/repos/acme/api/statuses/{SHA}")
    assert first.headers["authorization"] == f"Bearer {GH_TOKEN}"
    body = json.loads(first.body)
    assert body == {"state": "pending", "context": "bridge/build", "target_url": "http://ci/job/1/",
                    "description": body["description"]}
    assert len(body["description"]) == 140 and body["description"].endswith("\u2026")
    assert json.loads(second.body)["state"] == "error" and "target_url" not in json.loads(second.body)
    assert github.problems == []


def test_github_enterprise_api_prefix(tmp_path):
    with GitHubAPIStandin(GH_TOKEN, prefix="/api/v3") as ghes:
        answer = GitHubStatuses(ghes.url + "/", GH_TOKEN).post(status("success"))
        assert (answer.outcome, answer.code) == ("sent", 201)
        assert ghes.requests[0].path == f"/api/v3/repos/acme/api/statuses/{SHA}"


@pytest.mark.parametrize("code, body, headers, outcome, retry_after", [
    (422, {"message": f"No commit found for SHA: {SHA}"}, {}, "done", None),
    (429, {"message": "slow down"}, {"Retry-After": "7"}, "retry", 7.0),
    (429, {"message": "API rate limit exceeded for installation"},
     {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1045"}, "retry", 45.0),
    (429, {"message": "slow down"},
     {"Retry-After": "5", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1045"}, "retry", 5.0),
    (403, {"message": "API rate limit exceeded for user"},
     {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1090"}, "retry", 90.0),
    (403, {"message": "You have exceeded a secondary rate limit"}, {"Retry-After": "60"}, "retry", 60.0),
    (403, {"message": "Resource not accessible by integration"}, {}, "failed", None),
    (404, {"message": "Not Found"}, {}, "failed", None),
    (500, {"message": "Server Error"}, {}, "retry", None),
    (502, "<html>bad gateway</html>", {}, "retry", None),
])
def test_github_answers_are_classified(github, code, body, headers, outcome, retry_after):
    github.answer_next(code, body, headers=headers)
    answer = GitHubStatuses(github.url, GH_TOKEN, now=lambda: 1000.0).post(status())
    assert (answer.outcome, answer.code, answer.retry_after) == (outcome, code, retry_after)
    assert answer.message.startswith(str(code))


def test_github_unknown_commit_and_bad_token_are_not_retried(tmp_path):
    with GitHubAPIStandin(GH_TOKEN, known_shas={"a" * 40}) as gh:
        unknown = GitHubStatuses(gh.url, GH_TOKEN).post(status())
        assert (unknown.outcome, unknown.code) == ("done", 422)
        assert unknown.message == f"422 No commit found for SHA: {SHA}"
        bad = GitHubStatuses(gh.url, "ghp_wrong").post(status(sha="a" * 40))
        assert (bad.outcome, bad.code) == ("failed", 401)
        assert "Bad credentials" in bad.message and "ghp_wrong" not in bad.message


def test_timeouts_and_refused_connections_are_retried(github):
    github.hang_next(1.0)
    answer = GitHubStatuses(github.url, GH_TOKEN, timeout=0.2).post(status())
    assert (answer.outcome, answer.code) == ("retry", None)
    assert answer.message == "no answer from 127.0.0.1:%d within 0.2s" % github.port
    url = github.url
    github.stop()
    refused = GitHubStatuses(url, GH_TOKEN).post(status())
    assert refused.outcome == "retry" and refused.message.startswith("cannot connect to 127.0.0.1")


def test_gitlab_post_encodes_the_project_path_and_names_the_status(gitlab):
    client = GitLabStatuses(gitlab.api_url, GL_TOKEN)
    for state in ("pending", "running", "failure"):
        assert client.post(status(state, repo="group/sub/proj", ref="release/1.x",
                                  url="http://ci/1/")).outcome == "sent"
    first = gitlab.requests[0]
    assert first.path == f"/api/v4/projects/group%2Fsub%2Fproj/statuses/{SHA}"
    assert first.headers["private-token"] == GL_TOKEN and "authorization" not in first.headers
    assert json.loads(first.body) == {"state": "pending", "name": "bridge/build", "ref": "release/1.x",
                                      "description": "queued", "target_url": "http://ci/1/"}
    assert [s.state for s in gitlab.statuses] == ["pending", "running", "failed"]
    assert gitlab.problems == []


def test_gitlab_same_state_twice_is_done_and_conflicts_are_retried(gitlab):
    client = GitLabStatuses(gitlab.api_url, GL_TOKEN)
    assert client.post(status("running")).outcome == "sent"
    again = client.post(status("running"))
    assert (again.outcome, again.code) == ("done", 400)
    assert "Cannot transition status via :run from :running" in again.message
    gitlab.answer_next(409, {"message": "409 Conflict"})
    assert client.post(status("success")).outcome == "retry"
    gitlab.answer_next(400, {"message": {"base": ["unknown"]}})
    assert client.post(status("success")).outcome == "failed"
    assert client.post(status("canceled")).outcome == "sent"
    assert gitlab.states() == ["running", "canceled"]


@pytest.mark.parametrize("state, detail, expected", [
    ("succeeded", {"result": "SUCCESS"}, ("success", "build succeeded")),
    ("failed", {"result": "UNSTABLE"}, ("failure", "build failed (UNSTABLE)")),
    ("failed", {"result": "ABORTED"}, ("canceled", "build canceled (ABORTED)")),
    ("failed", {"status": "FAULT"}, ("error", "build error (FAULT)")),
    ("failed", {"result": "UNKNOWN", "reason": "queue item 4 vanished"},
     ("error", "build error (queue item 4 vanished)")),
    ("failed", {"status": "TIMED_OUT"}, ("failure", "build failed (TIMED_OUT)")),
    ("failed", {"exit_code": 2}, ("failure", "build failed (exit code 2)")),
])
def test_final_states_from_jenkins_codebuild_and_exec(state, detail, expected):
    assert final_state(Run("1", state=state, detail=detail)) == expected


# --- the status queue in the store, and the poster -------------------------------------------------

class OneSource:
    """A Feedback view for store-level tests: the `github` source reports to the stand-in."""

    def __init__(self, client, policy=RetryPolicy(initial=2.0, maximum=60.0, give_up_after=600.0)):
        self.clients = {"github": client}
        self.policy = policy

    sources = property(lambda self: sorted(self.clients))

    def client(self, source):
        return self.clients.get(source)

    def retry_policy(self, source):
        return self.policy


def test_a_later_status_supersedes_one_not_yet_posted_and_order_is_kept(open_store, github):
    store = open_store()
    clock = Clock()
    store.ingest(new_delivery("d-1"), [new_job()])
    store.add_statuses([status("pending", description="queued", rank=0, key="job:1:queued")], now=clock())
    store.add_statuses([status("running", rank=1, key="job:1:accepted", url="http://ci/1/")], now=clock())
    store.add_statuses([status("pending", rank=0, key="job:1:queued")], now=clock())   # offered again
    poster = StatusPoster(store, OneSource(GitHubStatuses(github.url, GH_TOKEN)), owner="p", now=clock,
                          rand=lambda: 0.5)
    assert poster.post_once() == 1
    assert [(s.state, s.target_url) for s in github.statuses] == [("pending", "http://ci/1/")]
    rows = store.statuses_of("d-1")
    assert [(r["key"], r["post_state"], r["answer_code"]) for r in rows] == [
        ("job:1:queued", "superseded", None), ("job:1:accepted", "sent", 201)]
    assert poster.post_once() == 0


def test_one_jobs_statuses_are_never_posted_at_once(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1"), [new_job()])
    store.add_statuses([status("pending", rank=1, key="job:1:accepted")], now=1000.0)
    (first,) = store.claim_statuses("A", 5, lease_seconds=30, now=1000.0)
    store.add_statuses([status("success", rank=3, key="job:1:final")], now=1001.0)
    assert store.claim_statuses("B", 5, lease_seconds=30, now=1001.0) == []    # A is still posting
    assert store.record_status(first.id, "A", outcome="sent", code=201, now=1002.0)
    (final,) = store.claim_statuses("B", 5, lease_seconds=30, now=1002.0)
    assert (final.key, final.attempts) == ("job:1:final", 1)
    # A dead poster's lease expires: its status is taken over, not lost.
    assert store.claim_statuses("C", 5, lease_seconds=30, now=1040.0)[0].attempts == 2


def test_host_down_backs_off_honours_retry_after_then_delivers(open_store, github, caplog):
    store = open_store()
    clock = Clock()
    store.ingest(new_delivery("d-1"), [new_job()])
    store.add_statuses([status("success", rank=3, key="job:1:final")], now=clock())
    poster = StatusPoster(store, OneSource(GitHubStatuses(github.url, GH_TOKEN)), owner="p", now=clock,
                          rand=lambda: 0.5)
    github.answer_next(500, {"message": "Server Error"})
    assert poster.post_once() == 1
    row = store.statuses_of("d-1")[0]
    assert (row["post_state"], row["answer_code"], row["next_attempt_at"]) == ("waiting", 500, 1001.0)
    assert poster.post_once() == 0                        # not due yet
    clock.t = 1001.0
    github.answer_next(429, {"message": "slow down"}, headers={"Retry-After": "30"})
    assert poster.post_once() == 1
    assert store.statuses_of("d-1")[0]["next_attempt_at"] == 1031.0     # Retry-After beats 2s backoff
    clock.t = 1031.0
    assert poster.post_once() == 1
    row = store.statuses_of("d-1")[0]
    assert (row["post_state"], row["answer_code"], row["attempts"]) == ("sent", 201, 3)
    assert github.states() == ["success"]
    assert GH_TOKEN not in caplog.text


def test_posting_gives_up_after_the_sources_give_up_time(open_store, github):
    store = open_store()
    clock = Clock()
    store.ingest(new_delivery("d-1"), [new_job()])
    store.add_statuses([status("success", rank=3, key="job:1:final")], now=clock())
    github.stop()
    poster = StatusPoster(store, OneSource(GitHubStatuses(github.url, GH_TOKEN),
                                           RetryPolicy(initial=1.0, maximum=10.0, give_up_after=20.0)),
                          owner="p", now=clock, rand=lambda: 1.0)
    while store.statuses_of("d-1")[0]["post_state"] == "waiting":
        clock.t = store.statuses_of("d-1")[0]["next_attempt_at"]
        poster.post_once()
    row = store.statuses_of("d-1")[0]
    assert row["post_state"] == "failed" and row["answer"].startswith("gave up after 20s: cannot connect")
    assert row["attempts"] == 6                  # at 1000, 1001, 1003, 1007, 1015; at 1025 it gives up


def test_a_status_for_a_source_that_stopped_reporting_is_dropped(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1"), [new_job()])
    store.add_statuses([status("success", rank=3)], now=1000.0)
    poster = StatusPoster(store, OneSource(None), owner="p", now=lambda: 1000.0)
    assert poster.post_once() == 1
    assert store.statuses_of("d-1")[0]["post_state"] == "dropped"


# --- the dispatcher: follow Jenkins builds, store every step's status ------------------------------

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
        d = replace(new_delivery(delivery, received_at=self.clock()), event=event.to_dict(),
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


def test_a_build_shows_queued_then_its_link_then_success(setup):
    poster = setup.poster()
    (job_id,) = setup.push()
    setup.post_all(poster)
    assert [(s.state, s.description, s.context) for s in setup.github.statuses] == [
        ("pending", "queued", "bridge/build")]
    d = setup.dispatcher()
    assert d.run_once() == 1
    setup.post_all(poster)
    build_url = f"{setup.jenkins.url}job/api/job/build/1/"
    assert [(s.state, s.target_url, s.description) for s in setup.github.statuses][1:] == [
        ("pending", build_url, "building on ci")]
    assert d.follow_once() == 0                           # not due before the follow interval
    setup.clock.t += 2.0
    assert d.follow_once() == 1                           # still building
    assert setup.store.follow_of(job_id)["next_check_at"] == pytest.approx(setup.clock.t + 2.0)
    setup.jenkins.advance(60)
    setup.clock.t += 3.0
    assert d.follow_once() == 1
    setup.post_all(poster)
    assert [(s.state, s.target_url) for s in setup.github.statuses][2:] == [("success", build_url)]
    job = setup.store.get_delivery("d-1")["jobs"][0]
    assert (job["state"], job["url"]) == ("succeeded", build_url)
    assert [h["outcome"] for h in job["history"]] == ["started", "succeeded"]
    assert setup.github.problems == []
    assert d.follow_once() == 0


def test_a_failing_build_ends_failure(setup):
    poster = setup.poster()
    setup.push(request={"job": "api/broken", "delay": 0})
    d = setup.dispatcher()
    d.run_once()
    setup.jenkins.advance(60)
    setup.clock.t += 2.0
    d.follow_once()
    setup.post_all(poster)
    assert setup.github.states() == ["failure"]           # queued and building were superseded
    assert setup.github.statuses[-1].description == "build failed (FAILURE)"
    assert setup.store.get_delivery("d-1")["jobs"][0]["state"] == "failed"


def test_a_queued_jenkins_build_gets_its_build_link_when_it_starts(setup):
    setup.jenkins.quiet_period = 30.0
    poster = setup.poster()
    (job_id,) = setup.push(request={"job": "api/build"})
    d = setup.dispatcher()
    d.run_once()
    setup.post_all(poster)
    waiting = setup.github.statuses[-1]
    # The job's page, not the queue item's (that page 404s in Jenkins' UI).
    assert waiting.target_url == f"{setup.jenkins.url}job/api/job/build/"
    assert waiting.description == "waiting in the queue of ci"
    setup.jenkins.advance(30)
    setup.clock.t += 2.0
    d.follow_once()
    setup.post_all(poster)
    build_url = f"{setup.jenkins.url}job/api/job/build/1/"
    assert (setup.github.statuses[-1].state, setup.github.statuses[-1].target_url) == ("pending", build_url)
    assert setup.store.get_delivery("d-1")["jobs"][0]["url"] == build_url


def test_a_dead_letter_reports_error_with_the_reason(setup):
    poster = setup.poster()
    setup.push(request={"job": "api/nope", "delay": 0})
    setup.dispatcher().run_once()
    setup.post_all(poster)
    (last,) = setup.github.statuses[-1:]
    assert last.state == "error"
    assert last.description == "could not start the build: job 'api/nope' not found on target 'ci'"


def test_skips_report_success_only_where_asked(setup):
    poster = setup.poster()
    # Paths settled from the payload at match time: no job; the scanner finds the skip.
    setup.push("d-docs", rule=None, files=("src/app.py",))
    setup.post_all(poster)
    assert [(s.context, s.state, s.description) for s in setup.github.statuses] == [
        ("ci/docs", "success", "skipped: no matching paths")]
    # Paths settled by the dispatcher (files unknown): skipped job, final success, no pending first.
    setup.push("d-2", rule="docs", needs_files=True)
    setup.push("d-3", rule="quiet-skip", needs_files=True)
    setup.post_all(poster)
    assert len(setup.github.statuses) == 2 and setup.github.statuses[-1].state == "pending"
    setup.dispatcher(decide_paths=lambda cj: (False, "no changed file matches paths [docs/**]")).run_once()
    setup.post_all(poster)
    assert [(s.context, s.state, s.description) for s in setup.github.statuses[1:]] == [
        ("ci/docs", "pending", "queued"), ("ci/docs", "success", "skipped: no matching paths")]


def test_a_skip_marker_reports_success_where_asked(setup):
    setup.push("d-skip", rule=None, message="docs: typo\n\n[skip ci]")
    setup.post_all(setup.poster())
    assert [(s.context, s.state, s.description) for s in setup.github.statuses] == [
        ("ci/docs", "success", "skipped: [skip ci] in the commit message")]


def test_report_false_posts_nothing(setup):
    poster = setup.poster()
    setup.push("d-s", ref="refs/heads/silent", rule="silent")
    setup.dispatcher().run_once()
    setup.post_all(poster)
    assert setup.github.requests == []


def test_following_survives_a_dead_dispatcher(setup):
    (job_id,) = setup.push()
    setup.dispatcher("d1").run_once()
    setup.clock.t += 2.0
    # d1 claims the follow and dies before it records anything.
    assert len(setup.store.claim_follows("d1", ["ci"], 5, lease_seconds=60, now=setup.clock())) == 1
    other = setup.dispatcher("d2")
    assert other.follow_once() == 0                       # d1's follow lease still holds
    setup.jenkins.advance(60)
    setup.clock.t += 61
    assert other.follow_once() == 1
    assert setup.store.get_delivery("d-1")["jobs"][0]["state"] == "succeeded"
    assert setup.store.follow_of(job_id)["checks"] == 2


def test_following_gives_up_after_the_configured_time(tmp_path, jenkins, github, open_store):
    setup = Setup(tmp_path, jenkins, github, open_store(), give_up_after=60.0)
    poster = setup.poster()
    (job_id,) = setup.push()
    d = setup.dispatcher()
    d.run_once()
    while setup.store.follow_of(job_id)["state"] == "following":
        setup.clock.t = setup.store.follow_of(job_id)["next_check_at"]
        d.follow_once()
    assert setup.store.follow_of(job_id)["last_error"] == "stopped following the build after 1m"
    assert setup.store.get_delivery("d-1")["jobs"][0]["state"] == "started"
    setup.post_all(poster)
    assert (setup.github.statuses[-1].state, setup.github.statuses[-1].description) == (
        "error", "stopped following the build after 1m")


def test_jenkins_down_while_following_is_retried(setup):
    (job_id,) = setup.push()
    d = setup.dispatcher()
    d.run_once()
    setup.jenkins.stop()
    setup.clock.t += 2.0
    d.follow_once()
    follow = setup.store.follow_of(job_id)
    assert (follow["state"], follow["last_error"]) == (
        "following", "Jenkins target 'ci' is unreachable (connection refused or reset)")
    setup.jenkins.start()
    setup.jenkins.advance(60)
    setup.clock.t = follow["next_check_at"]
    d.follow_once()
    assert setup.store.get_delivery("d-1")["jobs"][0]["state"] == "succeeded"


def test_git_host_down_never_holds_up_builds(setup):
    setup.github.stop()
    poster = setup.poster()
    for i in range(3):
        setup.push(f"d-{i}")
    setup.post_all(poster)
    assert setup.dispatcher().run_once() == 3             # builds start regardless
    assert len(setup.jenkins.posts()) == 3
    setup.post_all(poster)
    setup.github.start()
    setup.clock.t += 600
    setup.post_all(poster)
    assert [s.state for s in setup.github.statuses] == ["pending"] * 3
    assert all(s.target_url.endswith(f"/{n}/") for s, n in zip(
        sorted(setup.github.statuses, key=lambda s: s.target_url), (1, 2, 3)))


def test_a_dead_job_retried_by_the_operator_reports_again(setup):
    poster = setup.poster()
    (job_id,) = setup.push(request={"job": "api/later", "delay": 0})
    setup.dispatcher().run_once()
    setup.post_all(poster)
    assert setup.github.states() == ["error"]
    setup.jenkins.add_job("api/later", ["BRIDGE_DELIVERY"])       # the operator fixed Jenkins
    assert setup.store.retry_job(job_id, now=setup.clock())
    d = setup.dispatcher()
    d.run_once()
    setup.jenkins.advance(60)
    setup.clock.t += 2.0
    d.follow_once()
    setup.post_all(poster)
    assert setup.github.states() == ["error", "success"]


def test_a_version_1_database_gains_the_feedback_tables(db_url, open_store):
    from helpers.store import run_sql
    open_store().close()
    run_sql(db_url, "DROP TABLE statuses; DROP TABLE follows; UPDATE schema_version SET version = 1;")
    store = open_store(upgrade=True)
    assert store.schema_status().current
    store.ingest(new_delivery("d-1"), [new_job()])
    store.add_statuses([status("success", rank=3)], now=1000.0)
    assert [r["post_state"] for r in store.statuses_of("d-1")] == ["waiting"]


class Unfollowable(Target):
    kind = "plain"

    def start(self, job):
        return Run(f"r-{job.id}", state="started")


def test_targets_that_cannot_follow_keep_their_jobs_started(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1"), [new_job()])
    d = Dispatcher(store, {"ci": Unfollowable("ci", {})}, {"ci": RetryPolicy()}, owner="d1",
                   now=Clock(), sleep=Clock().sleep)
    d.run_once()
    assert d.follow_once() == 0
    assert store.get_delivery("d-1")["jobs"][0]["state"] == "started"


def test_secrets_never_reach_the_store_or_the_logs(setup, caplog):
    caplog.set_level(logging.DEBUG)
    poster = setup.poster()
    setup.github.answer_next(401, {"message": "Bad credentials"})
    setup.push()
    setup.post_all(poster)
    d = setup.dispatcher()
    d.run_once()
    setup.jenkins.advance(60)
    setup.clock.t += 2
    d.follow_once()
    setup.post_all(poster)
    dump = json.dumps(setup.store.get_delivery("d-1"), default=str) + json.dumps(
        setup.store.statuses_of("d-1"), default=str)
    assert GH_TOKEN not in dump and GH_TOKEN not in caplog.text
    assert setup.jenkins.users["bridge"] not in dump
    assert "401 Bad credentials" in setup.store.statuses_of("d-1")[0]["answer"]


# --- end to end: a real `cibridge serve`, Jenkins stand-in, moto's CodeBuild, both git hosts ----------

E2E_RULES = """\
sources:
  github:
    provider: github
    secrets: ["${{env:GH_SECRET}}"]
    report: {{token: "${{env:GH_STATUS_TOKEN}}", api_url: "{github}", retry: {{initial: 200ms, maximum: 1s}}}}
  gitlab:
    provider: gitlab
    secrets: ["${{env:GL_SECRET}}"]
    report: {{token: "${{env:GL_STATUS_TOKEN}}", api_url: "{gitlab}", retry: {{initial: 200ms, maximum: 1s}}}}
targets:
  ci: {{kind: jenkins, url: "{jenkins}", user: bridge, token: "${{env:JENKINS_TOKEN}}"}}
  aws: {{kind: codebuild, region: eu-west-1, endpoint_url: "{moto}"}}
settings:
  follow: {{interval: 100ms, max_interval: 500ms}}
rules:
  - name: api
    on: {{source: github, branches: [main]}}
    run: {{target: ci, job: api/build, delay: 0}}
  - name: broken
    on: {{source: github, branches: [broken]}}
    run: {{target: ci, job: api/broken, delay: 0}}
  - name: release
    context: aws/release
    on: {{source: github, branches: [release]}}
    run: {{target: aws, project: feedback-e2e}}
  - name: gitlab-api
    on: {{source: gitlab, branches: [main]}}
    run: {{target: ci, job: api/build, delay: 0}}
"""
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_CONFIG_FILE": "/nonexistent/aws-config",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
           "AWS_EC2_METADATA_DISABLED": "true"}


class E2E:
    def __init__(self, directory):
        import boto3
        from moto.server import ThreadedMotoServer
        from helpers.process import BridgeProcess
        self.jenkins = JenkinsStandin(quiet_period=0.0, build_duration=3600.0)
        self.jenkins.add_job("api/build", ["BRIDGE_DELIVERY"])
        self.jenkins.add_job("api/broken", ["BRIDGE_DELIVERY"], result="FAILURE")
        self.github = GitHubAPIStandin(GH_TOKEN)
        self.gitlab = GitLabAPIStandin(GL_TOKEN)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        for s in (self.jenkins, self.github, self.gitlab, self.moto):
            s.start()
        host, port = self.moto.get_host_and_port()
        moto_url = f"http://{host}:{port}"
        boto3.client("codebuild", region_name="eu-west-1", endpoint_url=moto_url,
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_project(
            # moto's backends are per process, shared with test_codebuild: a name of our own.
            name="feedback-e2e", source={"type": "GITHUB", "location": "https://github.com/acme/api"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                         "computeType": "BUILD_GENERAL1_SMALL"},
            serviceRole="arn:aws:iam::123456789012:role/codebuild")
        self.env = {**ENV, **AWS_ENV, "JENKINS_TOKEN": self.jenkins.users["bridge"]}
        rules_text = E2E_RULES.format(github=self.github.url, gitlab=self.gitlab.api_url,
                                      jenkins=self.jenkins.url.rstrip("/"), moto=moto_url)
        self.moto_url = moto_url
        self.bridge = BridgeProcess(directory, rules_text, env=self.env, workers=1).start()

    def close(self):
        import requests
        self.bridge.stop()
        requests.post(f"{self.moto_url}/moto-api/reset", timeout=5)
        for s in (self.jenkins, self.github, self.gitlab, self.moto):
            s.stop()

    def github_push(self, branch: str, sha: str):
        from helpers.payloads import load_payload, sign_github
        body, headers = load_payload("github/push__f110-single-commit.json")
        doc = json.loads(body)
        doc.update(ref=f"refs/heads/{branch}", after=sha)
        doc["head_commit"]["id"] = doc["commits"][-1]["id"] = sha
        body = json.dumps(doc).encode()
        headers["X-GitHub-Delivery"] = f"gh-{sha[-12:]}"
        headers.update(sign_github(body, ENV["GH_SECRET"]))
        reply = self.bridge.post("github", body, headers)
        assert reply.status_code == 202, reply.text
        return reply.json()["delivery"]

    def gitlab_push(self, sha: str):
        from helpers.payloads import load_payload
        body, headers = load_payload("gitlab/push_hook__docs.json")
        doc = json.loads(body)
        doc.update(ref="refs/heads/main", after=sha, checkout_sha=sha)
        doc["commits"][-1]["id"] = sha
        headers["X-Gitlab-Token"] = ENV["GL_SECRET"]
        headers["X-Gitlab-Event-UUID"] = headers["Idempotency-Key"] = f"gl-{sha[-12:]}"
        reply = self.bridge.post("gitlab", json.dumps(doc).encode(), headers)
        assert reply.status_code == 202, reply.text
        return reply.json()["delivery"]

    def job(self, delivery: str) -> dict:
        store = self.bridge.store()
        try:
            return store.get_delivery(delivery)["jobs"][0]
        finally:
            store.close()


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    env = E2E(tmp_path_factory.mktemp("feedback-e2e"))
    yield env
    env.close()


def _sha(n: int) -> str:
    return f"{n:040x}"


def _for(sha, states):
    return lambda statuses: [s.state for s in statuses if s.sha == sha][-len(states):] == states


@pytest.mark.slow
def test_e2e_github_pending_with_the_jenkins_link_then_success(e2e):
    sha = _sha(0xA1)
    delivery = e2e.github_push("main", sha)
    seen = e2e.github.wait_for(lambda st: any(s.sha == sha and s.target_url for s in st))
    building = [s for s in seen if s.sha == sha and s.target_url][0]
    assert building.state == "pending" and building.context == "bridge/api"
    assert building.target_url.startswith(f"{e2e.jenkins.url}job/api/job/build/")
    e2e.jenkins.advance(3600)
    final = [s for s in e2e.github.wait_for(_for(sha, ["success"])) if s.sha == sha]
    assert [s.state for s in final][0] == "pending"
    assert (final[-1].target_url, final[-1].repo) == (building.target_url, "f110/test")
    assert e2e.job(delivery)["state"] == "succeeded"
    assert e2e.github.problems == []


@pytest.mark.slow
def test_e2e_a_failing_build_ends_failure(e2e):
    sha = _sha(0xB2)
    e2e.github_push("broken", sha)
    e2e.github.wait_for(lambda st: any(s.sha == sha and s.target_url for s in st))
    e2e.jenkins.advance(3600)
    final = [s for s in e2e.github.wait_for(_for(sha, ["failure"])) if s.sha == sha]
    assert final[-1].description == "build failed (FAILURE)"
    assert "/job/api/job/broken/" in final[-1].target_url


@pytest.mark.slow
def test_e2e_gitlab_pending_running_success(e2e):
    sha = _sha(0xC3)
    e2e.gitlab_push(sha)
    e2e.gitlab.wait_for(lambda st: any(s.sha == sha and s.state == "running" for s in st))
    e2e.jenkins.advance(3600)
    final = [s for s in e2e.gitlab.wait_for(_for(sha, ["success"])) if s.sha == sha]
    assert {(s.repo, s.context, s.ref) for s in final} == {("mike/diaspora", "bridge/gitlab-api", "main")}
    assert [s.state for s in final][-2:] == ["running", "success"]
    assert final[-1].target_url.startswith(f"{e2e.jenkins.url}job/api/job/build/")
    assert e2e.gitlab.problems == []


@pytest.mark.slow
def test_e2e_codebuild_reports_its_console_link(e2e):
    sha = _sha(0xD4)
    delivery = e2e.github_push("release", sha)
    final = [s for s in e2e.github.wait_for(_for(sha, ["success"])) if s.sha == sha]
    assert final[-1].context == "aws/release"
    assert final[-1].target_url.startswith("https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/")
    assert e2e.job(delivery)["state"] == "succeeded"


@pytest.mark.slow
def test_e2e_git_host_down_builds_start_and_statuses_arrive_when_it_is_back(e2e):
    from click.testing import CliRunner

    from bridge.cli.main import cli
    from helpers.process import wait_for
    e2e.github.stop()
    sha = _sha(0xE5)
    delivery = e2e.github_push("main", sha)
    wait_for(lambda: e2e.job(delivery)["state"] == "started", what="the build to start")
    e2e.jenkins.advance(3600)
    wait_for(lambda: e2e.job(delivery)["state"] == "succeeded", what="the build to end")
    assert not [s for s in e2e.github.statuses if s.sha == sha]
    e2e.github.start()
    final = [s for s in e2e.github.wait_for(_for(sha, ["success"])) if s.sha == sha]
    assert final[-1].target_url == e2e.job(delivery)["url"]
    # The operator sees every status and the host's answers.
    out = CliRunner().invoke(cli, ["deliveries", "--rules", str(e2e.bridge.rules), "--state-dir",
                                   str(e2e.bridge.state), "show", delivery], env=e2e.env)
    assert out.exit_code == 0, out.output
    lines = [line.strip() for line in out.output.splitlines() if line.strip().startswith("status ")]
    assert lines[-1].startswith('status success  bridge/api  "build succeeded"  -> sent (201)')
    assert any("cannot connect to 127.0.0.1" in line for line in lines)
    assert GH_TOKEN not in out.output and GH_TOKEN not in e2e.bridge.logs()
