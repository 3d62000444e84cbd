"""Children of a real `cibridge serve` that restart between an edit of rules.yaml and its reload:
they keep the accepted rules (old or new) until SIGHUP, and keep building."""
from __future__ import annotations

import json
import os
import signal
import socket

import pytest
import requests

from helpers.process import children, wait_for
from helpers.service import (RECORD, build_counts, cli, db, job_states, push, rules, settled,
                             start_bridge)  # noqa: F401  (fixture)


# --- children that restart between an edit of rules.yaml and its reload ---------------------------

def readyz(bridge) -> dict:
    return requests.get(f"{bridge.url}/readyz", timeout=5).json()


def kill_child(bridge, role: str) -> None:
    """kill -9 the supervisor's `web` (gunicorn master and its workers) or `dispatch` child, and
    wait until the supervisor has started another one and the bridge answers again."""
    pid = bridge.child(role)
    assert pid, f"no {role} child"
    if role == "dispatch":   # killed once it has said which rules it runs, not before
        wait_for(lambda: f"dispatcher {socket.gethostname()}:{pid} started" in bridge.logs(),
                 what="the dispatcher started")
    for p in [pid] + children(pid):
        os.kill(p, signal.SIGKILL)
    wait_for(lambda: bridge.child(role) not in (None, pid), timeout=30, what=f"a new {role} child")
    bridge.wait_ready()
    if role == "web":   # both new workers up, not just the first one
        wait_for(lambda: len(bridge.web_workers()) == bridge.workers, what="the new web workers")


def send_pushes(bridge, n: int) -> list[dict]:
    """n pushes on fresh connections (so they land on every worker); each reply, which must be 202."""
    replies = []
    for _ in range(n):
        _, body, headers = push()
        r = bridge.post("github", body, headers)
        assert r.status_code == 202, (r.status_code, r.text)
        replies.append(r.json())
    return replies


def stored_versions(bridge, replies) -> set[str]:
    with db(bridge) as conn:
        return {conn.execute("SELECT rules_version FROM deliveries WHERE id = ?",
                             (r["delivery"],)).fetchone()[0] for r in replies}


def started_versions(bridge) -> list[str]:
    """The rules version each dispatcher started on, in order, from the JSON log lines."""
    out = []
    for line in bridge.logs().splitlines():
        if line.startswith("{") and '"dispatcher ' in line:
            msg = json.loads(line)["message"]
            if " started (rules version " in msg:
                out.append(msg.rsplit(" ", 1)[1].rstrip(")"))
    return out


@pytest.mark.slow
def test_children_killed_after_a_refused_reload_keep_the_old_rules_and_keep_building(
        tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    good = rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}")
    broken = good.replace("target: local", "target: no-such-target")
    bridge = start_bridge(good, directory=tmp_path / "b")
    version = readyz(bridge)["rules_version"]

    bridge.rules.write_text(broken)
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: "rules_reload_error" in readyz(bridge), what="/readyz to report the refusal")
    # Every child dies in turn: the supervisor restarts each on the last good rules (before the
    # fix, `cibridge web` exited 1 on the broken file until the supervisor gave up).
    kill_child(bridge, "web")
    kill_child(bridge, "dispatch")
    kill_child(bridge, "web")
    replies = send_pushes(bridge, 6)
    assert all(r["matched"] == ["build"] for r in replies)
    assert stored_versions(bridge, replies) == {version}
    ready = readyz(bridge)
    assert ready["rules_version"] == version and ready["status"] == "ready"
    assert any("no-such-target" in p for p in ready["rules_reload_error"]), ready
    wait_for(lambda: settled(bridge, 6), what="six builds")
    assert job_states(bridge) == {"succeeded": 6} and len(build_counts(builds)) == 6
    assert bridge.proc.poll() is None and "giving up" not in bridge.logs()
    wait_for(lambda: len(started_versions(bridge)) == 2, what="the new dispatcher started")
    assert started_versions(bridge) == [version, version]

    # The whole service restarts on the broken file (systemd Restart=, a reboot): it starts on
    # the last good rules and says why, instead of failing to start.
    assert bridge.stop() == 0
    again = start_bridge(broken, directory=tmp_path / "b")
    ready = readyz(again)
    assert ready["rules_version"] == version and "rules_reload_error" in ready
    replies = send_pushes(again, 2)
    assert all(r["matched"] == ["build"] for r in replies)
    wait_for(lambda: settled(again, 8), what="two more builds")
    assert len(build_counts(builds)) == 8
    assert any('"level": "error"' in line and "starting on the last good rules" in line
               for line in again.logs().splitlines())

    # With nothing accepted yet, a broken file is still a clear refusal to start.
    first = cli("serve", "--rules", again.rules, "--state-dir", tmp_path / "fresh-state",
                "--bind", "127.0.0.1:1")
    assert first.returncode == 1 and "nothing started" in first.stderr
    assert "no-such-target" in first.stderr and "Traceback" not in first.stderr


@pytest.mark.slow
def test_an_edit_nobody_reloaded_stays_out_when_children_restart_until_sighup(tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    first = rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}")
    edited = first.replace("- name: build", "- name: build-edited")
    bridge = start_bridge(first)
    version = readyz(bridge)["rules_version"]
    status = bridge.state / "rules-status.json"

    # A valid edit, saved but not reloaded; then every process restarts on its own.
    bridge.rules.write_text(edited)
    kill_child(bridge, "dispatch")
    wait_for(lambda: len(started_versions(bridge)) == 2, what="the new dispatcher started")
    assert json.loads(status.read_text())["version"] == version
    assert (bridge.state / "rules.last-good.yaml").read_text() == first
    worker = min(bridge.web_workers())
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: len(bridge.web_workers()) == 2 and worker not in bridge.web_workers(),
             what="a new web worker")
    kill_child(bridge, "web")
    replies = send_pushes(bridge, 8)
    assert all(r["matched"] == ["build"] for r in replies), replies
    assert stored_versions(bridge, replies) == {version}
    assert {readyz(bridge)["rules_version"] for _ in range(8)} == {version}
    assert json.loads(status.read_text())["version"] == version
    assert started_versions(bridge) == [version, version]
    assert "was edited since the rules were last loaded" in bridge.logs()
    wait_for(lambda: settled(bridge, 8), what="eight builds")
    assert len(build_counts(builds)) == 8

    # The reload puts the edit into service, in every worker and the dispatcher.
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: {readyz(bridge)["rules_version"] for _ in range(6)} - {version},
             what="the edited rules to serve")
    wait_for(lambda: len({readyz(bridge)["rules_version"] for _ in range(6)}) == 1,
             what="every worker on the edited rules")
    new_version = readyz(bridge)["rules_version"]
    assert new_version != version and json.loads(status.read_text())["version"] == new_version
    replies = send_pushes(bridge, 4)
    assert all(r["matched"] == ["build-edited"] for r in replies)
    wait_for(lambda: settled(bridge, 12), what="the builds of the edited rules")
    assert job_states(bridge) == {"succeeded": 12}


def test_split_bridge_web_restarts_on_the_accepted_rules_and_takes_an_edit_on_sighup(
        tmp_path, start_bridge):
    """`cibridge web` under its own unit: a restart (systemctl restart, Restart=on-failure) keeps
    the rules the service accepted, as the other half still runs them; SIGHUP loads the edit."""
    first = rules(tmp_path / "builds.log", "{target: local, command: [/bin/true]}")
    edited = first.replace("- name: build", "- name: build-edited")
    web = start_bridge(first, directory=tmp_path / "w", command="web")
    version = readyz(web)["rules_version"]
    assert web.stop() == 0

    web = start_bridge(edited, directory=tmp_path / "w", command="web")
    assert readyz(web)["rules_version"] == version
    assert [r["matched"] for r in send_pushes(web, 3)] == [["build"]] * 3
    assert "was edited since the rules were last loaded" in web.logs()

    web.signal(signal.SIGHUP)   # `cibridge web` is the gunicorn master itself
    wait_for(lambda: version not in {readyz(web)["rules_version"] for _ in range(6)},
             what="every worker on the edited rules")
    assert [r["matched"] for r in send_pushes(web, 3)] == [["build-edited"]] * 3
