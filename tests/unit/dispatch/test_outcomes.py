"""Dispatcher outcomes: an outcome is logged only once the store has it, and exec exit codes a
target names as transient (`retry_on_exit`) go through the normal backoff.

Input: a real SQLite store (made unwritable with chattr +i for the outage), real exec commands,
an injected clock. Output: assertions on log lines, job states and attempt histories.
"""
from __future__ import annotations

import contextlib
import logging
import os

import pytest

from bridge.dispatch.loop import Dispatcher
from bridge.errors import StoreUnavailable
from bridge.jobs import Run
from bridge.policies import RetryPolicy
from bridge.store import Store
from bridge.targets.base import Target
from bridge.targets.exec import ExecTarget
from helpers.store import Clock, new_delivery, new_job, unwritable

POLICY = RetryPolicy(initial=5.0, maximum=600.0, give_up_after=3600.0)


class Finishes(Target):
    """A target whose build succeeds inside start(); `on_start` runs first (to begin an outage)."""
    kind = "finishes"

    def __init__(self, on_start=lambda: None):
        super().__init__("ci", {})
        self.on_start = on_start

    def start(self, job):
        self.on_start()
        return Run(remote_id=f"r-{job.id}", url=f"http://ci/{job.id}", state="succeeded")


class StateAtLogTime(logging.Handler):
    """Records each dispatcher line with the job's state in the database at that moment."""

    def __init__(self, store: Store, delivery: str):
        super().__init__()
        self.store, self.delivery = store, delivery
        self.lines: list[tuple[str, str]] = []

    def emit(self, record):
        try:
            state = self.store.get_delivery(self.delivery)["jobs"][0]["state"]
        except StoreUnavailable:        # during the outage even a read may fail
            state = "unreadable"
        self.lines.append((record.getMessage(), state))


def test_succeeded_is_logged_only_after_the_store_recorded_it(tmp_path):
    """The database is unwritable (chattr +i: a real fault) when the build's result comes; the
    dispatcher retries the write until it is back. While it cannot record, no line may say the
    build succeeded; the line comes once the row says so."""
    if os.geteuid() != 0:
        pytest.skip("an unwritable file an open connection cannot write needs chattr +i (root)")
    store = Store.open(f"sqlite:///{tmp_path}/bridge.db", durability="normal")
    handler = StateAtLogTime(store, "d-1")
    log = logging.getLogger("test.bridge.dispatcher.outcomes")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
        clock = Clock(1000.0)
        with contextlib.ExitStack() as outage:
            def begin_outage():
                outage.enter_context(unwritable(tmp_path / "bridge.db"))
                outage.enter_context(unwritable(tmp_path / "bridge.db-wal"))

            def sleep(seconds):
                clock.sleep(seconds)
                if len(clock.sleeps) >= 3:     # three failed writes later: writable again
                    outage.close()

            dispatcher = Dispatcher(store, {"ci": Finishes(begin_outage)}, {"ci": POLICY}, owner="d1",
                                    now=clock, sleep=sleep, rand=lambda: 0.5, log=log)
            assert dispatcher.run_once() == 1
        said = [(m, state) for m, state in handler.lines if "succeeded" in m]
        assert said, handler.lines
        assert all(state == "succeeded" for _, state in said), handler.lines
        messages = [m for m, _ in handler.lines]
        assert any("cannot record the result yet" in m for m in messages)
        assert messages.index(said[0][0]) > max(i for i, m in enumerate(messages)
                                                 if "cannot record the result yet" in m)
    finally:
        log.removeHandler(handler)
        store.close()


# --- exec retry_on_exit ---------------------------------------------------------------------

def exec_dispatcher(store, options, clock, policy=POLICY):
    target = ExecTarget("local", {"kind": "exec", **options})
    return Dispatcher(store, {"local": target}, {"local": policy}, owner="d1", now=clock,
                      sleep=clock.sleep, rand=lambda: 0.5)


def one_job(store):
    return store.get_delivery("d-1")["jobs"][0]


@pytest.fixture
def store(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path}/bridge.db", durability="normal")
    yield s
    s.close()


#: Busy (EX_TEMPFAIL, 75) the first time, then done: what a deploy script says while a lock is held.
BUSY_ONCE = ["/bin/sh", "-c", 'if [ -e "$FLAG" ]; then echo built; exit 0; fi; : > "$FLAG"; '
                              'echo "lock held by another deploy"; exit 75']


def test_a_transient_exit_code_goes_through_the_backoff_then_builds(store, tmp_path):
    flag = tmp_path / "flag"
    store.ingest(new_delivery("d-1", received_at=1000.0),
                 [new_job(target="local", kind="exec", command=BUSY_ONCE, env={"FLAG": str(flag)})])
    clock = Clock(1000.0)
    d = exec_dispatcher(store, {"retry_on_exit": [75]}, clock)
    assert d.run_once() == 1
    job = one_job(store)
    assert (job["state"], job["next_attempt_at"]) == ("queued", 1000.0 + 0.5 * 5.0)
    assert job["last_error"] == ("'/bin/sh' exited with 75, a transient code (retry_on_exit): "
                                 "lock held by another deploy")
    assert d.run_once() == 0                  # not before its time
    clock.t += 2.5
    assert d.run_once() == 1
    job = one_job(store)
    assert (job["state"], job["detail"]["exit_code"]) == ("succeeded", 0)
    assert [a["outcome"] for a in job["history"]] == ["retry", "succeeded"]


def test_other_exit_codes_fail_and_a_rule_can_name_its_own(store, tmp_path):
    flag = tmp_path / "flag"
    store.ingest(new_delivery("d-1", received_at=1000.0),
                 [new_job(target="local", kind="exec", command=BUSY_ONCE, env={"FLAG": str(flag)},
                          retry_on_exit=[])])      # the rule's own list: nothing is transient
    exec_dispatcher(store, {"retry_on_exit": [75]}, Clock(1000.0)).run_once()
    job = one_job(store)
    assert (job["state"], job["detail"]["exit_code"]) == ("failed", 75)


def test_a_transient_exit_code_for_longer_than_give_up_after_is_dead(store, tmp_path):
    store.ingest(new_delivery("d-1", received_at=1000.0),
                 [new_job(target="local", kind="exec", command=["/bin/sh", "-c", "exit 75"])])
    clock = Clock(1000.0 + 3600.0 + 1)
    exec_dispatcher(store, {"retry_on_exit": [75, 111]}, clock).run_once()
    job = one_job(store)
    assert job["state"] == "dead"
    assert job["last_error"] == "gave up after 1h: '/bin/sh' exited with 75, a transient code (retry_on_exit)"


@pytest.mark.parametrize("where, value, line", [
    ("target", "[0]", 7), ("target", "75", 7), ("target", "[75, '75']", 7), ("target", "[true]", 7),
    ("target", "[256]", 7), ("run", "[-1]", 13),
])
def test_retry_on_exit_is_validated_with_its_line(tmp_path, where, value, line):
    from bridge.config.load import load_config
    from bridge.errors import ConfigError
    target_line = f"    retry_on_exit: {value}\n" if where == "target" else ""
    run_line = f"      retry_on_exit: {value}\n" if where == "run" else ""
    text = ("sources:\n  gh:\n    provider: github\n    secrets: ['${env:S}']\n"
            "targets:\n  local:\n" + (target_line or "    cwd: /tmp\n") + "    kind: exec\n"
            "rules:\n  - name: deploy\n    on: {repo: acme/api}\n    run:\n"
            + (run_line or "      cwd: /tmp\n") + "      target: local\n      command: [deploy]\n")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"S": "x"})
    [problem] = caught.value.problems
    where_text = "target 'local': " if where == "target" else "rule 'deploy': "
    assert problem.startswith(f"rules.yaml:{line}: {where_text}retry_on_exit must list exit codes "
                              "from 1 to 255"), problem


def test_retry_on_exit_accepted(tmp_path):
    from bridge.config.load import load_config
    path = tmp_path / "rules.yaml"
    path.write_text("sources:\n  gh: {provider: github, secrets: ['${env:S}']}\n"
                    "targets:\n  local: {kind: exec, retry_on_exit: [75, 111]}\n"
                    "rules:\n  - name: deploy\n    on: {repo: acme/api}\n"
                    "    run: {target: local, command: [deploy], retry_on_exit: [75]}\n")
    config = load_config(path, environ={"S": "x"})
    assert config.targets["local"].options["retry_on_exit"] == [75, 111]
