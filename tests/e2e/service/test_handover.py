"""A real `cibridge serve` validates rules.yaml once and hands the result to its children: they
say so and never read the rules or their secrets themselves, at start, on a reload, or when
they restart after a crash; a bad file on a reload keeps the handed-over rules serving.

The evidence is timing-free: the children's log lines, and a secret file that exists only while
the supervisor loads the rules (a child that read it again could not start).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from helpers.ports import free_port
from helpers.process import ROOT, children, cmdline, wait_for
from helpers.rules import GITHUB_SECRET, SECRET_ENV
from helpers.service import (RECORD, build_counts, job_states, push, rules, settled,
                             start_bridge)  # noqa: F401  (fixture)

HANDED = "handed over by cibridge serve (validated there, not here)"


def handed_over(bridge) -> list[str]:
    """The version each child took from the supervisor, in order, from the JSON log lines."""
    out = []
    for line in bridge.logs().splitlines():
        if line.startswith("{") and HANDED in line:
            out.append(json.loads(line)["message"].split()[2])
    return out


def readyz(bridge) -> dict:
    return requests.get(f"{bridge.url}/readyz", timeout=5).json()


def started_versions(bridge) -> list[str]:
    """The rules version each dispatcher started on, in order."""
    out = []
    for line in bridge.logs().splitlines():
        if line.startswith("{") and '"dispatcher ' in line:
            msg = json.loads(line)["message"]
            if " started (rules version " in msg:
                out.append(msg.rsplit(" ", 1)[1].rstrip(")"))
    return out


def kill_child(bridge, role: str) -> None:
    """kill -9 the supervisor's `web` (gunicorn master and workers) or `dispatch` child; wait
    until another one started and the bridge answers with all its workers."""
    pid = bridge.child(role)
    assert pid, f"no {role} child"
    if role == "dispatch":
        wait_for(lambda: f"dispatcher {socket.gethostname()}:{pid} started" in bridge.logs(),
                 what="the dispatcher started")
    for p in [pid] + children(pid):
        os.kill(p, signal.SIGKILL)
    wait_for(lambda: bridge.child(role) not in (None, pid), timeout=30, what=f"a new {role} child")
    bridge.wait_ready()
    if role == "web":
        wait_for(lambda: len(bridge.web_workers()) == bridge.workers, what="the new web workers")


def send_pushes(bridge, n: int) -> list[dict]:
    replies = []
    for _ in range(n):
        _, body, headers = push()
        r = bridge.post("github", body, headers)
        assert r.status_code == 202, (r.status_code, r.text)
        replies.append(r.json())
    return replies


def file_secret_rules(tmp_path, secret_file: str) -> str:
    text = rules(tmp_path / "builds.log", f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}")
    return text.replace("${env:GH_SECRET}", "${file:%s}" % secret_file)


@pytest.mark.slow
def test_children_take_the_supervisors_rules_at_start_reload_and_restart(tmp_path, start_bridge):
    directory = tmp_path / "b"
    directory.mkdir()
    secret = directory / "secret-1"
    secret.write_text(GITHUB_SECRET + "\n")
    bridge = start_bridge(file_secret_rules(tmp_path, "secret-1"), directory=directory)
    version = readyz(bridge)["rules_version"]
    wait_for(lambda: len(handed_over(bridge)) == 2, what="both children to take the rules")
    assert handed_over(bridge) == [version, version]

    # The secret file is gone: only a process that does not load the rules again can start.
    secret.unlink()
    kill_child(bridge, "web")
    kill_child(bridge, "dispatch")
    wait_for(lambda: len(handed_over(bridge)) == 4, what="the restarted children to take the rules")
    assert handed_over(bridge) == [version] * 4
    replies = send_pushes(bridge, 4)
    assert all(r["matched"] == ["build"] for r in replies)
    wait_for(lambda: settled(bridge, 4), what="four builds")
    assert job_states(bridge) == {"succeeded": 4} and len(build_counts(bridge.dir.parent / "builds.log")) == 4
    assert "giving up" not in bridge.logs()

    # A reload: the supervisor validates (with the new secret file), the children take it.
    (directory / "secret-2").write_text(GITHUB_SECRET + "\n")
    edited = file_secret_rules(tmp_path, "secret-2").replace("- name: build", "- name: build-edited")
    bridge.rules.write_text(edited)
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: len(handed_over(bridge)) == 6, what="both children to take the new rules")
    new_version = handed_over(bridge)[-1]
    assert new_version != version and handed_over(bridge)[4:] == [new_version] * 2
    wait_for(lambda: {readyz(bridge)["rules_version"] for _ in range(6)} == {new_version},
             what="every worker on the new rules")
    assert [r["matched"] for r in send_pushes(bridge, 3)] == [["build-edited"]] * 3

    # A bad file: refused by the supervisor; the children are not even signalled, and one that
    # crashes now restarts on the accepted (reloaded) rules.
    bridge.rules.write_text(edited.replace("target: local", "target: no-such-target"))
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: "rules_reload_error" in readyz(bridge), what="/readyz to report the refusal")
    (directory / "secret-2").unlink()
    kill_child(bridge, "dispatch")
    wait_for(lambda: len(handed_over(bridge)) == 7, what="the new dispatcher to take the rules")
    assert handed_over(bridge)[-1] == new_version
    wait_for(lambda: len(started_versions(bridge)) == 3, what="the new dispatcher started")
    assert started_versions(bridge)[-1] == new_version
    assert [r["matched"] for r in send_pushes(bridge, 3)] == [["build-edited"]] * 3
    wait_for(lambda: settled(bridge, 10), what="ten builds")
    assert job_states(bridge) == {"succeeded": 10}
    assert bridge.proc.poll() is None and "giving up" not in bridge.logs()
    # Nothing of the secret, nor of the pickled rules, in the log.
    assert GITHUB_SECRET not in bridge.logs()


def test_a_child_started_alone_validates_the_rules_itself(tmp_path, start_bridge):
    """`cibridge web` under its own unit has no supervisor to trust: it loads the file, and a
    $BRIDGE_RULES_CHANNEL it did not get from a `cibridge serve` parent is ignored."""
    text = rules(tmp_path / "builds.log", "{target: local, command: [/bin/true]}")
    web = start_bridge(text, directory=tmp_path / "w", command="web")
    assert HANDED not in web.logs()
    assert [r["matched"] for r in send_pushes(web, 2)] == [["build"]] * 2
    web.stop()

    web = start_bridge(text, directory=tmp_path / "w2", command="web")
    web.stop()
    web.env["BRIDGE_RULES_CHANNEL"] = "0"      # stdin: /dev/null here, no channel
    web.start()
    assert HANDED not in web.logs()
    assert "is no rules channel from cibridge serve" in web.logs()
    assert [r["matched"] for r in send_pushes(web, 2)] == [["build"]] * 2


def test_nothing_left_running_when_the_store_cannot_be_opened(tmp_path):
    """The children start before the rules are checked and the schema created (in a child the
    supervisor forks: it never loads SQLAlchemy itself); when the database is down, they are
    stopped and `cibridge serve` exits 1 with the store's message."""
    text = rules(tmp_path / "builds.log", "{target: local, command: [/bin/true]}", settings=(
        'database_url: "postgresql://bridge@127.0.0.1:1/nope"'))
    (tmp_path / "rules.yaml").write_text(text)
    done = subprocess.run([sys.executable, "-m", "bridge", "serve", "--rules", str(tmp_path / "rules.yaml"),
                           "--state-dir", str(tmp_path / "var"), "--bind", f"127.0.0.1:{free_port()}"],
                          cwd=ROOT, text=True, capture_output=True, timeout=120,
                          env={**os.environ, **SECRET_ENV})
    assert done.returncode == 1, done
    assert "bridge: store unavailable" in done.stderr and "Traceback" not in done.stderr
    assert "listening on" not in done.stderr and HANDED not in done.stdout + done.stderr
    leftovers = [pid for pid in os.listdir("/proc") if pid.isdigit()
                 and str(tmp_path) in cmdline(int(pid))]
    assert leftovers == []
