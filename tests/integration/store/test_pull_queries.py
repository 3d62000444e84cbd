"""The store's pull-request questions on SQLite and PostgreSQL: the newest job of the same rule for
the same pull request (found past pages of other jobs, never an older one or another rule's),
and a comment's event completed once, with its jobs' requests rendered in the same transaction."""
from __future__ import annotations

from dataclasses import replace

import pytest
from helpers.store import db_url, open_store  # noqa: F401  (fixtures)
from helpers.store import new_delivery, new_job

PR = "refs/pull/7/head"


@pytest.fixture
def store(open_store):
    return open_store(durability="normal")


def test_the_newest_job_of_the_same_rule_and_pull_request(store):
    [first] = store.ingest(new_delivery("d-first", ref=PR), [new_job("pr")]).job_ids
    for i in range(60):         # newer jobs about other things
        store.ingest(new_delivery(f"d-other-{i}", ref="refs/pull/8/head" if i % 2 else PR),
                     [new_job("pr" if i % 2 else "other-rule")])
    [second] = store.ingest(new_delivery("d-second", ref=PR, after="b" * 40), [new_job("pr")]).job_ids
    store.ingest(new_delivery("d-other-repo", ref=PR, repo="acme/web"), [new_job("pr")])
    ask = dict(rule="pr", source="github", repo="acme/api", ref=PR)
    assert store.newer_pull_job(first, **ask) == (second, "b" * 40)
    assert store.newer_pull_job(second, **ask) is None
    assert store.newer_pull_job(first, **{**ask, "source": "gitlab"}) is None


def test_a_comment_is_completed_once_with_its_requests_rendered(store):
    d = new_delivery("d-comment", ref=PR)
    store.ingest(replace(d, event=replace(d.event, sha=None)),
                 [new_job("retest", parameters={"SHA": "${sha}"}), new_job("other", parameters={"X": "1"})])

    def render(request, ev):
        return {**request, "parameters": {k: v.replace("${sha}", ev["sha"])
                                          for k, v in request["parameters"].items()}}
    event = replace(d.event, sha=None).to_dict()
    stored = store.complete_event("d-comment", {**event, "sha": "c" * 40}, render)
    assert stored["sha"] == "c" * 40
    assert store.complete_event("d-comment", {**event, "sha": "d" * 40}, render)["sha"] == "c" * 40
    got = store.get_delivery("d-comment")
    assert got["event"]["sha"] == "c" * 40
    assert [j["request"]["parameters"] for j in got["jobs"]] == [{"SHA": "c" * 40}, {"X": "1"}]

