"""Statuses from the dispatcher on the Jenkins stand-in: queued, the build link, success or failure, dead
letters, skips reported only where asked, skip markers (read from the stored verdict, of a new or
an old database), `report: false`."""
from __future__ import annotations

import pytest

from bridge.dispatch.statuses import skip_description
from helpers.statuses import github, jenkins, setup  # noqa: F401  (fixtures)
from helpers.store import db_url, open_store  # noqa: F401  (fixtures)


# --- the dispatcher: follow Jenkins builds, store every step's status ------------------------------


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


@pytest.mark.parametrize("verdict, description", [
    ({"stopped_by": {"clause": "skip", "value": "[ci skip]", "patterns": []}},
     "skipped: [ci skip] in the commit message"),
    ({"stopped_by": {"clause": "paths", "value": "2 files changed", "patterns": ["docs/**"]}},
     "skipped: no matching paths"),
    ({"stopped_by": {"clause": "paths-ignore", "value": "1 file changed", "patterns": ["*.md"]}},
     "skipped: no matching paths"),
    ({"stopped_by": {"clause": "branches", "value": "dev", "patterns": ["main"]}}, None),
    ({"stopped_by": {"clause": "repo", "value": "acme/web", "patterns": ["acme/api"]}}, None),
    # Stored before verdicts kept stopped_by: read from the reason.
    ({"reason": "head commit message contains '[no ci]'"}, "skipped: [no ci] in the commit message"),
    ({"reason": "no changed file matches paths [docs/**] (1 file changed)"}, "skipped: no matching paths"),
    ({"reason": "every changed file is in paths-ignore [docs/**] (1 file changed)"},
     "skipped: no matching paths"),
    ({"reason": "branch 'dev' is not in branches [main]"}, None),
    ({"reason": "repo 'acme/web' is not in [acme/api]", "stopped_by": None}, None),
])
def test_the_skip_is_read_from_the_stored_verdict(verdict, description):
    assert skip_description({"rule": "r", "matched": False, "reason": "", **verdict}) == description
