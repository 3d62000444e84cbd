"""exec target tests: real subprocesses (failing, hanging, flooding, vanishing) and validation."""
from __future__ import annotations

import os
import signal
import threading
import time
import tracemalloc

import pytest

from bridge.errors import TargetRejected, TargetUnavailable
from bridge.events import Event
from bridge.jobs import Job, Run
from bridge.targets import target_class
from bridge.targets.exec import OUTPUT_LIMIT, ExecTarget

EVENT = Event(provider="github", source="github", delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
              kind="push", repo="acme/api", ref="refs/heads/release/1.x", ref_name="release/1.x",
              before="1" * 40, after="2" * 40, sha="2" * 40, pusher="octocat")


def job(command, **request) -> Job:
    return Job(id=42, delivery=EVENT.delivery_id, rule="deploy", target="local",
               request={"target": "local", "command": command, **request}, event=EVENT, attempt=3)


def env_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def gone(pid: int) -> bool:
    """True once `pid` is dead (a zombie awaiting its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return gone(pid)


def test_registry_names_exec():
    assert target_class("exec") is ExecTarget


def test_event_fields_arrive_as_bridge_variables_on_a_minimal_environment(monkeypatch):
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "s3cret-value")
    monkeypatch.setenv("LANG", "C.UTF-8")
    target = ExecTarget("local", {"env": {"DEPLOY_ENV": "staging", "LEVEL": 2}})
    run = target.start(job(["env"], env={"EXTRA": "yes", "BRIDGE_SHA": "forged"}))
    assert run.state == "succeeded" and run.detail["exit_code"] == 0
    env = env_of(run.detail["output"])
    assert env["BRIDGE_SHA"] == "2" * 40                 # a run's env cannot forge it
    assert env["BRIDGE_BRANCH"] == "release/1.x" and env["BRIDGE_TAG"] == ""
    assert env["BRIDGE_REF"] == "refs/heads/release/1.x"
    assert env["BRIDGE_REPO"] == "acme/api"
    assert (env["BRIDGE_BEFORE"], env["BRIDGE_AFTER"]) == ("1" * 40, "2" * 40)
    assert env["BRIDGE_PUSHER"] == "octocat"
    assert env["BRIDGE_DELIVERY"] == EVENT.delivery_id
    assert (env["BRIDGE_RULE"], env["BRIDGE_JOB_ID"], env["BRIDGE_ATTEMPT"]) == ("deploy", "42", "3")
    assert (env["DEPLOY_ENV"], env["LEVEL"], env["EXTRA"]) == ("staging", "2", "yes")
    assert env["PATH"] == os.environ["PATH"] and env["LANG"] == "C.UTF-8"
    assert "GITHUB_WEBHOOK_SECRET" not in env
    assert "s3cret-value" not in run.detail["output"]
    inherited = {k for k in ("PATH", "HOME", "LANG") if k in os.environ}
    assert {k for k in env if not k.startswith("BRIDGE_")} == inherited | {"DEPLOY_ENV", "LEVEL", "EXTRA"}


def test_working_directory_from_the_run_or_the_target(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    target = ExecTarget("local", {"cwd": str(tmp_path / "a")})
    assert target.start(job(["pwd"])).detail["output"].strip() == str(tmp_path / "a")
    assert target.start(job(["pwd"], cwd=str(tmp_path / "b"))).detail["output"].strip() == str(tmp_path / "b")


def test_non_zero_exit_is_a_failed_build_with_its_code_and_output():
    run = ExecTarget("local", {}).start(job(["sh", "-c", "echo compiling; echo 'error: x' >&2; exit 3"]))
    assert run.state == "failed"
    assert run.detail["exit_code"] == 3 and run.detail["reason"] == "exit code 3"
    assert run.detail["output"] == "compiling\nerror: x\n"


def test_hanging_command_is_killed_with_its_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    run = ExecTarget("local", {"timeout": 30}).start(
        job(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo waiting; wait"], timeout=0.5))
    assert run.state == "failed"
    assert run.detail["reason"] == "timed out after 0.5s"
    assert run.detail["exit_code"] == -signal.SIGTERM
    assert run.detail["output"] == "waiting\n"
    assert wait_gone(int(pidfile.read_text()))


def test_a_command_ignoring_sigterm_gets_sigkill_after_the_grace():
    target = ExecTarget("local", {}, term_grace=0.2)
    run = target.start(job(["sh", "-c", "trap '' TERM; echo stubborn; while :; do sleep 0.05; done"],
                           timeout=0.3))
    assert run.state == "failed" and run.detail["exit_code"] == -signal.SIGKILL
    assert run.detail["reason"] == "timed out after 0.3s"
    assert run.detail["output"] == "stubborn\n"


def test_100_mb_of_output_keeps_only_the_tail_in_bounded_memory():
    tracemalloc.start()
    try:
        run = ExecTarget("local", {}).start(
            job(["sh", "-c", "head -c 100000000 /dev/zero; echo; echo the end"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.state == "succeeded"
    assert run.detail["output_bytes"] == 100_000_000 + len("\nthe end\n")
    assert len(run.detail["output"]) == OUTPUT_LIMIT
    assert run.detail["output"].endswith("\0\nthe end\n")
    assert peak < 4 * 2**20


def test_background_leftovers_do_not_hold_the_job_and_are_killed(tmp_path):
    pidfile = tmp_path / "bg.pid"
    run = ExecTarget("local", {}).start(job(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo started"],
                                            timeout=20))
    assert run.state == "succeeded" and run.detail["output"] == "started\n"
    assert wait_gone(int(pidfile.read_text()))


def test_missing_or_unrunnable_commands_are_rejected(tmp_path):
    target = ExecTarget("local", {})
    with pytest.raises(TargetRejected, match="command 'no-such-command-xyz' not found"):
        target.start(job(["no-such-command-xyz"]))
    script = tmp_path / "deploy.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(TargetRejected, match="not executable"):    # even root needs an x bit
        target.start(job([str(script)]))
    with pytest.raises(TargetRejected, match="not executable"):
        target.start(job([str(tmp_path)]))          # a directory
    with pytest.raises(TargetRejected, match=f"working directory '{tmp_path}/nope' does not exist"):
        target.start(job(["true"], cwd=str(tmp_path / "nope")))


def test_close_interrupts_running_commands_and_refuses_new_ones():
    target = ExecTarget("local", {})
    errors = []

    def run():
        try:
            target.start(job(["sleep", "30"]))
        except TargetUnavailable as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 5
    while not target._running and time.monotonic() < deadline:
        time.sleep(0.01)
    target.close()
    thread.join(5)
    assert errors == ["'sleep' was stopped: the bridge is shutting down"]
    with pytest.raises(TargetUnavailable, match="shutting down"):
        target.start(job(["true"]))


def test_cancel_sends_sigterm_to_the_process_group_and_the_run_says_cancelled(tmp_path):
    target = ExecTarget("local", {}, term_grace=5.0)
    marker = tmp_path / "terminated"
    # The shell traps TERM (as a build script cleaning up would) and its child sleeps: the whole
    # group gets the signal.
    script = f"trap 'echo term > {marker}; exit 143' TERM; sleep 30 & wait"
    runs = []
    thread = threading.Thread(target=lambda: runs.append(target.start(job(["sh", "-c", script]))))
    thread.start()
    deadline = time.monotonic() + 5
    while not target._by_job and time.monotonic() < deadline:
        time.sleep(0.01)
    assert target.cancel(Run(remote_id="", detail={"job_id": 41})) is False     # not ours
    assert target.cancel(Run(remote_id="", detail={"job_id": 42})) is True
    thread.join(10)
    assert marker.read_text() == "term\n"
    assert runs[0].state == "failed" and runs[0].detail["cancelled"] is True
    assert runs[0].detail["reason"] == "cancelled: superseded by a newer job of its group"
    assert target._by_job == {}


NOT_ARGV = "command must be a non-empty list of strings (an argv list; no shell)"


@pytest.mark.parametrize("run,problems", [
    ({"target": "local", "command": ["make", "deploy"]}, []),
    ({"target": "local", "command": ["make"], "cwd": "/srv", "timeout": 60, "env": {"A": "b"}}, []),
    ({"target": "local"}, [NOT_ARGV]),
    ({"target": "local", "command": "make deploy"},
     [NOT_ARGV]),
    ({"target": "local", "command": []}, [NOT_ARGV]),
    ({"target": "local", "command": ["make", 1]},
     [NOT_ARGV]),
    ({"target": "local", "command": [""]}, ["command[0] (the program) must not be empty"]),
    ({"target": "local", "command": ["x"], "timeout": 0},
     ["timeout must be a positive number of seconds, not 0"]),
    ({"target": "local", "command": ["x"], "timeout": "5m"},
     ["timeout must be a positive number of seconds, not '5m'"]),
    ({"target": "local", "command": ["x"], "env": ["A=b"]}, ["env must map variable names to strings"]),
    ({"target": "local", "command": ["x"], "cwd": 5}, ["cwd must be a path (a string)"]),
])
def test_validate_run(run, problems):
    assert ExecTarget.validate_run(run) == problems


def test_validate_target_options():
    assert ExecTarget.validate({"kind": "exec", "cwd": "/srv", "timeout": 600}) == []
    assert ExecTarget.validate({"kind": "exec", "timeout": True}) == \
        ["timeout must be a positive number of seconds, not True"]


def test_a_deletion_has_an_empty_bridge_sha():
    deleted = Event(provider="gitlab", source="gitlab", delivery_id="d-del", kind="delete",
                    repo="acme/api", ref="refs/heads/feature/x", ref_name="feature/x",
                    before="1" * 40, after="0" * 40, sha=None, deleted=True)
    target = ExecTarget("local", {})
    run = target.start(Job(id=43, delivery="d-del", rule="cleanup", target="local",
                           request={"target": "local", "command": ["env"]}, event=deleted, attempt=1))
    env = env_of(run.detail["output"])
    assert env["BRIDGE_SHA"] == "" and env["BRIDGE_SHORT_SHA"] == ""      # set, and empty
    assert env["BRIDGE_BEFORE"] == "1" * 40 and env["BRIDGE_AFTER"] == "0" * 40
    assert env["BRIDGE_KIND"] == "delete" and env["BRIDGE_BRANCH"] == "feature/x"
