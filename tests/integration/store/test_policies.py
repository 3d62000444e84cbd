"""Per-target policy in the claim, on SQLite and PostgreSQL, with two stores (two instances) on one
database: max_running across instances, a dead instance's slot back after its lease, groups,
coalesce, cancel, debounce, rate, and the reasons a waiting job gives."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

from bridge.jobs import Run
from bridge.policies import Breaker, Policies, Rate, TargetPolicy
from bridge.store.admission import clock
from helpers.store import db_url, open_store  # noqa: F401  (fixtures)
from helpers.store import new_delivery, new_job

LEASE = 60


def queue(store, n: int, *, group: str = "g", at: float = 1000.0, target: str = "ci",
          rule: str = "build", prefix: str = "d") -> list[int]:
    """`n` deliveries (one job each) of one group, one second apart from `at`."""
    ids = []
    for i in range(n):
        d = new_delivery(f"{prefix}-{group}-{i}", received_at=at + i)
        ids += store.ingest(d, [replace(new_job(rule, target), group=group)]).job_ids
    return ids


def policed(**policy) -> Policies:
    return Policies(targets={"ci": TargetPolicy(**policy)})


def ids(jobs) -> list[int]:
    return [j.id for j in jobs]


def test_max_running_holds_across_two_instances_and_frees_as_builds_end(open_store):
    a, b = open_store(), open_store()
    pol = policed(max_running=3)
    jobs = queue(a, 3, group="x") + queue(a, 3, group="y", at=1010, prefix="e")
    first = a.claim("A", 2, lease_seconds=LEASE, now=2000, policies=pol)
    second = b.claim("B", 5, lease_seconds=LEASE, now=2000, policies=pol)
    assert (len(first), len(second)) == (2, 1)
    assert b.claim("B", 5, lease_seconds=LEASE, now=2000, policies=pol) == []
    assert b.waiting_reasons(jobs, pol, now=2000) == {j: "waiting: max_running 3 reached"
                                                      for j in jobs[3:]}
    # A started build (followed) keeps its slot; a finished one gives it back.
    started, finished = first
    assert a.record_run(started.id, "A", Run("ci#1", state="started"), now=2001)
    assert a.record_run(finished.id, "A", Run("ci#2", state="succeeded"), now=2001)
    assert ids(b.claim("B", 5, lease_seconds=LEASE, now=2002, policies=pol)) == [jobs[3]]
    claim = a.claim_follows("A", ["ci"], 1, lease_seconds=LEASE, now=2003)[0]
    assert a.finish_follow(claim.job.id, "A", Run("ci#1", state="succeeded"), now=2004)
    assert ids(b.claim("B", 5, lease_seconds=LEASE, now=2005, policies=pol)) == [jobs[4]]
    # Without the policy, the rest goes at once.
    assert ids(b.claim("B", 5, lease_seconds=LEASE, now=2005)) == [jobs[5]]


def test_a_killed_instances_slot_comes_back_after_its_lease(open_store):
    a, b = open_store(), open_store()
    pol = policed(max_running=1)
    jobs = queue(a, 2, group="z")
    (dead,) = a.claim("A", 5, lease_seconds=LEASE, now=2000, policies=pol)      # A dies here
    assert b.claim("B", 5, lease_seconds=LEASE, now=2000 + LEASE - 1, policies=pol) == []
    assert b.waiting_reasons(jobs, pol, now=2000 + LEASE - 1) == {jobs[1]: "waiting: max_running 1 reached"}
    (taken,) = b.claim("B", 5, lease_seconds=LEASE, now=2000 + LEASE + 1, policies=pol)
    assert (taken.id, taken.attempt) == (dead.id, 2)     # its job first (lease expired), in its slot
    assert b.record_run(taken.id, "B", Run("m", state="succeeded"), now=2100)
    assert ids(b.claim("B", 5, lease_seconds=LEASE, now=2101, policies=pol)) == [jobs[1]]


def test_concurrent_claims_of_two_instances_never_exceed_max_running(open_store):
    a, b = open_store(), open_store()
    pol = policed(max_running=4)
    queue(a, 40, group="g")
    queue(a, 40, group="h", prefix="e")
    seen: list[int] = []
    claimed: list[int] = []

    def work(store, owner):
        for _ in range(25):
            got = store.claim(owner, 3, lease_seconds=LEASE, now=time.time(), policies=pol)
            claimed.extend(j.id for j in got)
            seen.append(store.queue_stats(time.time())["jobs"]["running"])   # the database's own count
            for job in got:           # a build that ends at once: its slot frees
                store.record_run(job.id, owner, Run("m", state="succeeded"), now=time.time())

    threads = [threading.Thread(target=work, args=(s, o)) for s, o in ((a, "A"), (b, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert max(seen) <= 4 and len(claimed) == len(set(claimed)) > 4


def test_max_running_per_group_and_a_rules_own_max_running(open_store):
    store = open_store()
    pol = Policies(targets={"ci": TargetPolicy(max_running_per_group=1)},
                   rules={"slow": {"max_running": 1}})
    g1 = queue(store, 2, group="g1")
    g2 = queue(store, 2, group="g2", at=1010, prefix="e")
    slow = queue(store, 2, group="s", rule="slow", at=1020, prefix="s") + queue(store, 1, group="t", rule="slow", at=1030,
                                                                         prefix="t")
    got = ids(store.claim("A", 10, lease_seconds=LEASE, now=2000, policies=pol))
    assert got == [g1[0], g2[0], slow[0]]
    reasons = store.waiting_reasons(g1 + slow, pol, now=2000)
    assert reasons == {g1[1]: "waiting: max_running_per_group 1 reached",
                       slow[1]: "waiting: rule max_running 1 reached",
                       slow[2]: "waiting: rule max_running 1 reached"}


def test_coalesce_starts_only_the_newest_waiting_job_of_a_group(open_store):
    store = open_store()
    pol = policed(on_newer="coalesce", max_running_per_group=1)
    old = queue(store, 3, group="main")
    other = queue(store, 1, group="dev", at=1010, prefix="e")
    superseded: list = []
    got = store.claim("A", 10, lease_seconds=LEASE, now=2000, policies=pol, superseded=superseded)
    assert ids(got) == [old[2], other[0]]
    assert [(s.job.id, s.by, s.run) for s in superseded] == [(old[0], old[2], None), (old[1], old[2], None)]
    newest_sha = got[0].event.sha
    assert {s.by_sha for s in superseded} == {newest_sha}
    assert superseded[0].job.event.repo == "acme/api"           # enough for its status
    jobs = {j["id"]: j for j in store.get_delivery("d-main-0")["jobs"]}
    assert (jobs[old[0]]["state"], jobs[old[0]]["superseded_by"]) == ("superseded", old[2])
    # A push while the newest builds waits for it (per group 1) and is itself the newest.
    later = queue(store, 2, group="main", at=2001, prefix="f")
    assert store.waiting_reasons(later, pol, now=2005) == {
        later[0]: f"superseded by job {later[1]} at the next claim",
        later[1]: "waiting: max_running_per_group 1 reached"}
    assert store.claim("A", 10, lease_seconds=LEASE, now=2005, policies=pol, superseded=superseded) == []
    assert superseded[-1].job.id == later[0]


def test_cancel_supersedes_the_running_build_of_the_group_when_the_newer_one_starts(open_store):
    a, b = open_store(), open_store()
    pol = policed(on_newer="cancel", max_running_per_group=1)
    first = queue(a, 1, group="main")
    (running,) = a.claim("A", 5, lease_seconds=LEASE, now=2000, policies=pol)
    run = Run("team/api#7", url="http://ci/job/api/7/", state="started", detail={"job": "api", "number": 7})
    assert a.record_run(running.id, "A", run, now=2001)
    newer = queue(a, 1, group="main", at=2002, prefix="e")
    superseded: list = []
    got = b.claim("B", 5, lease_seconds=LEASE, now=2003, policies=pol, superseded=superseded)
    assert ids(got) == newer
    (s,) = superseded
    assert (s.job.id, s.by, s.by_sha, s.run, s.running_here) == (first[0], newer[0], got[0].event.sha, run, False)
    assert a.follow_of(first[0])["state"] == "cancelled"
    assert a.claim_follows("A", ["ci"], 5, lease_seconds=LEASE, now=2010) == []
    job = a.get_delivery("d-main-0")["jobs"][0]
    assert (job["state"], job["superseded_by"]) == ("superseded", newer[0])


def test_cancel_reaches_a_build_running_under_the_claimers_own_lease_only(open_store):
    store = open_store()
    pol = policed(on_newer="cancel", max_running_per_group=1)
    (old,) = queue(store, 1, group="main", target="ci")
    store.claim("A", 5, lease_seconds=LEASE, now=2000, policies=pol)      # an exec build, running
    queue(store, 1, group="main", at=2001, prefix="e")
    assert store.claim("B", 5, lease_seconds=LEASE, now=2002, policies=pol, cancel_kinds=("memory",)) == []
    superseded: list = []
    got = store.claim("A", 5, lease_seconds=LEASE, now=2002, policies=pol, superseded=superseded,
                      cancel_kinds=("memory",))
    assert len(got) == 1
    assert [(s.job.id, s.running_here, s.run.detail) for s in superseded] == [(old, True, {"job_id": old})]


def test_debounce_waits_for_a_quiet_group_and_coalesces_what_came_meanwhile(open_store):
    store = open_store()
    pol = policed(debounce=10.0, on_newer="coalesce")
    (first,) = queue(store, 1, group="main", at=1000)
    assert store.claim("A", 5, lease_seconds=LEASE, now=1005, policies=pol) == []
    assert store.waiting_reasons([first], pol, now=1005) == {first: f"waiting: debounce until {clock(1010)}"}
    (second,) = queue(store, 1, group="main", at=1008, prefix="e")
    superseded: list = []
    assert store.claim("A", 5, lease_seconds=LEASE, now=1011, policies=pol, superseded=superseded) == []
    assert [s.job.id for s in superseded] == [first]
    assert ids(store.claim("A", 5, lease_seconds=LEASE, now=1018, policies=pol)) == [second]


def test_rate_is_a_token_bucket_shared_by_every_instance(open_store):
    a, b = open_store(), open_store()
    pol = policed(rate=Rate(2, 60.0))
    jobs = queue(a, 5, group="g")
    assert len(a.claim("A", 5, lease_seconds=LEASE, now=2000, policies=pol)) == 2
    assert b.claim("B", 5, lease_seconds=LEASE, now=2000, policies=pol) == []
    assert b.waiting_reasons(jobs[2:3], pol, now=2000) == {
        jobs[2]: f"waiting: rate 2/min reached, next start at {clock(2030)}"}
    assert b.claim("B", 5, lease_seconds=LEASE, now=2029, policies=pol) == []
    assert ids(b.claim("B", 5, lease_seconds=LEASE, now=2030, policies=pol)) == [jobs[2]]
    assert len(a.claim("A", 5, lease_seconds=LEASE, now=2090, policies=pol)) == 2    # full again


def test_the_breaker_opens_lets_one_probe_through_and_closes_on_its_success(open_store):
    a, b = open_store(), open_store()
    pol = policed(breaker=Breaker(failures=2, open_for=30.0))
    breaker = ("ci", Breaker(failures=2, open_for=30.0))
    jobs = queue(a, 4, group="g")
    one, two = a.claim("A", 2, lease_seconds=LEASE, now=2000, policies=pol)
    assert a.record_retry(one.id, "A", "down", 2001, now=2001, breaker=breaker)
    assert a.breaker_states(pol, now=2001) == {"ci": "closed"}
    assert a.record_retry(two.id, "A", "down", 2001, now=2001, breaker=breaker)
    assert b.breaker_states(pol, now=2001) == {"ci": "open"}
    assert b.claim("B", 5, lease_seconds=LEASE, now=2010, policies=pol) == []
    assert b.waiting_reasons(jobs[:1], pol, now=2010) == {jobs[0]: f"waiting: breaker open until {clock(2031)}"}
    (probe,) = b.claim("B", 5, lease_seconds=LEASE, now=2032, policies=pol)     # one, of four due
    assert b.breaker_states(pol, now=2032) == {"ci": "half_open"}
    assert a.claim("A", 5, lease_seconds=LEASE, now=2033, policies=pol) == []      # one probe only
    assert b.record_run(probe.id, "B", Run("m", state="succeeded"), now=2034, breaker=breaker)
    assert b.breaker_states(pol, now=2034) == {"ci": "closed"}
    assert len(a.claim("A", 5, lease_seconds=LEASE, now=2035, policies=pol)) == 3


def test_a_failed_probe_opens_the_breaker_again(open_store):
    store = open_store()
    pol = policed(breaker=Breaker(failures=1, open_for=30.0))
    breaker = ("ci", Breaker(failures=1, open_for=30.0))
    queue(store, 2, group="g")
    (first,) = store.claim("A", 1, lease_seconds=LEASE, now=2000, policies=pol)
    assert store.record_retry(first.id, "A", "down", 2000, now=2000, breaker=breaker)
    (probe,) = store.claim("A", 1, lease_seconds=LEASE, now=2031, policies=pol)
    assert store.record_retry(probe.id, "A", "still down", 2031, now=2031, breaker=breaker)
    assert store.breaker_states(pol, now=2040) == {"ci": "open"}
    assert store.claim("A", 5, lease_seconds=LEASE, now=2040, policies=pol) == []


def test_a_rules_own_rate_holds_back_that_rule_only(open_store):
    store = open_store()
    pol = Policies(targets={"ci": TargetPolicy()}, rules={"slow": {"rate": Rate(1, 60.0)}})
    slow = queue(store, 2, group="s", rule="slow")
    fast = queue(store, 2, group="f", rule="fast", at=1010, prefix="e")
    assert ids(store.claim("A", 10, lease_seconds=LEASE, now=2000, policies=pol)) == [slow[0]] + fast
    assert store.waiting_reasons(slow, pol, now=2000) == {
        slow[1]: f"waiting: rule rate 1/min reached, next start at {clock(2060)}"}
