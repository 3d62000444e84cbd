"""The status queue in a real store and its poster: later statuses supersede unposted ones, one job's
statuses post in order, a host down backs off, give-up time, sources that stopped reporting."""
from __future__ import annotations

from bridge.dispatch.statuses import StatusPoster
from bridge.providers.github import Statuses as GitHubStatuses
from bridge.policies import RetryPolicy
from helpers.store import Clock, db_url, new_delivery, new_job, open_store  # noqa: F401
from helpers.statuses import GH_TOKEN, github, status  # noqa: F401  (fixtures)


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
