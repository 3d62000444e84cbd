"""The dispatcher's retry policy at its edges: giving up exactly at give_up_after (not before),
a dead letter counted once and never also retried, a host's Retry-After only lengthening the
wait."""
import pytest
from prometheus_client import CollectorRegistry

from bridge.policies import RetryPolicy
from bridge.dispatch.loop import Dispatcher
from bridge.errors import TargetUnavailable
from bridge.metrics import Metrics
from bridge.store import Store
from bridge.jobs import Run
from bridge.targets.base import Target
from helpers.store import Clock, new_delivery, new_job

POLICY = RetryPolicy(initial=5.0, maximum=600.0, give_up_after=3600.0)


class Unavailable(Target):
    """A CI server that answers every start with the scripted transient failures, then starts."""
    kind = "unavailable"

    def __init__(self, errors):
        super().__init__("ci", {})
        self.errors = list(errors)

    def start(self, job):
        if self.errors:
            raise self.errors.pop(0)
        return Run(remote_id=f"build-{job.id}", state="started")


@pytest.fixture
def store(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path}/bridge.db")
    yield s
    s.close()


def dispatcher(store, target, clock, *, rand=lambda: 1.0, policy=POLICY, metrics=None):
    return Dispatcher(store, {"ci": target}, {"ci": policy}, owner="d1", now=clock, sleep=clock.sleep,
                      rand=rand, metrics=metrics)


def the_job(store):
    return store.get_delivery("d-1")["jobs"][0]


def counts(metrics):
    value = metrics.registry.get_sample_value
    return {"retries": value("bridge_job_retries_total", {"target": "ci"}) or 0,
            "dead": value("bridge_dead_letters_total", {"target": "ci"}) or 0,
            "dead_outcomes": value("bridge_job_outcomes_total", {"target": "ci", "state": "dead"}) or 0}


@pytest.mark.parametrize("waited, state", [(3599.0, "queued"), (3600.0, "queued"), (3600.5, "dead")])
def test_gives_up_only_after_give_up_after(store, waited, state):
    store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
    clock = Clock(1000.0 + waited)
    dispatcher(store, Unavailable([TargetUnavailable("down")]), clock).run_once()
    assert the_job(store)["state"] == state


def test_a_dead_letter_is_counted_once_and_not_retried(store):
    store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
    metrics = Metrics(registry=CollectorRegistry())
    clock = Clock(1000.0 + 3601.0)
    dispatcher(store, Unavailable([TargetUnavailable("down")]), clock, metrics=metrics).run_once()
    row = the_job(store)
    assert (row["state"], row["last_error"]) == ("dead", "gave up after 1h: down")
    assert [h["outcome"] for h in row["history"]] == ["dead"]
    assert counts(metrics) == {"retries": 0, "dead": 1, "dead_outcomes": 1}


def test_a_retry_is_counted(store):
    store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
    metrics = Metrics(registry=CollectorRegistry())
    dispatcher(store, Unavailable([TargetUnavailable("down")]), Clock(1000.0), metrics=metrics).run_once()
    assert counts(metrics) == {"retries": 1, "dead": 0, "dead_outcomes": 0}


@pytest.mark.parametrize("retry_after, delay", [(1.0, 5.0), (5.0, 5.0), (7.5, 7.5), (None, 5.0)])
def test_retry_after_only_lengthens_the_wait(store, retry_after, delay):
    store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
    clock = Clock(1000.0)
    dispatcher(store, Unavailable([TargetUnavailable("throttled", retry_after=retry_after)]), clock).run_once()
    assert the_job(store)["next_attempt_at"] == pytest.approx(1000.0 + delay)
