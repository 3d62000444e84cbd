"""Logs of a real `cibridge dispatch`: the level (flag > BRIDGE_LOG_LEVEL > settings.log_level >
info), journald priorities, text on a terminal (a pty), JSON otherwise, one info line per job
outcome worth acting on."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.store import Store
from helpers.process import wait_for
from helpers.store import new_delivery, new_job

pytestmark = pytest.mark.slow

RULES = """\
sources:
  github: {provider: github, secrets: ["${env:GH_SECRET}"]}
targets:
  sh: {kind: exec}
rules:
  - name: ok
    on: {repo: "**"}
    run: {target: sh, command: ["true"]}
"""


def queue_jobs(state: Path, delivery: str) -> None:
    """Three jobs: one succeeds (true), one fails (false), one names a target the rules lack
    (dead letter, an error)."""
    state.mkdir(parents=True, exist_ok=True)
    store = Store.open(f"sqlite:///{state / 'bridge.db'}", durability="normal")
    try:
        store.ingest(new_delivery(delivery), [
            new_job("ok", "sh", "exec", command=["true"]),
            new_job("bad", "sh", "exec", command=["false"]),
            new_job("lost", "gone", "exec", command=["true"])])
    finally:
        store.close()


def finished(state: Path, delivery: str) -> bool:
    store = Store.open(f"sqlite:///{state / 'bridge.db'}", durability="normal", create=False)
    try:
        jobs = store.get_delivery(delivery)["jobs"]
    finally:
        store.close()
    return all(j["state"] in ("succeeded", "failed", "dead") for j in jobs)


def run_dispatch(tmp_path, *, settings="", env=None, flags=(), stdout=None, journal=False,
                 delivery="d-logs") -> str:
    """`bridge [flags] dispatch` until the three jobs are done; its output."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES + settings, encoding="utf-8")
    state = tmp_path / "var"
    queue_jobs(state, delivery)
    out_path = tmp_path / "out.log"
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("BRIDGE_") and k not in ("JOURNAL_STREAM", "PROMETHEUS_MULTIPROC_DIR")}
    environ.update({"GH_SECRET": "s3cret-value", "PYTHONUNBUFFERED": "1", **(env or {})})
    with open(out_path, "wb") as out:
        if journal:   # as systemd does: JOURNAL_STREAM names the stream by device and inode
            st = os.fstat(out.fileno())
            environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.Popen([sys.executable, "-m", "bridge", *flags, "dispatch", "--rules",
                                 str(rules), "--state-dir", str(state)], env=environ,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: proc.poll() is not None or finished(state, delivery), timeout=60,
                     what="the jobs to finish")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return out_path.read_text(encoding="utf-8")


def messages(text: str) -> list[tuple[str, str]]:
    return [(line["level"], line["message"]) for line in map(json.loads, text.splitlines())]


def test_default_level_is_info_and_a_delivery_costs_one_line_per_outcome_worth_acting_on(tmp_path):
    lines = messages(run_dispatch(tmp_path))
    about_jobs = [(level, m) for level, m in lines if m.startswith("job ")]
    # The succeeded job says nothing at info; the failed build and the dead letter do.
    assert sorted(about_jobs) == [
        ("error", "job 3 (lost -> gone): rejected, dead letter: target 'gone' is not configured"),
        ("info", "job 2 (bad -> sh): failed: exit code 1")]
    assert not any(level == "debug" for level, _ in lines)


def test_settings_log_level_is_used_and_the_environment_and_flag_win_over_it(tmp_path):
    debug = messages(run_dispatch(tmp_path / "a", settings="settings: {log_level: debug}\n"))
    assert ("debug", "job 1 (ok -> sh): starting (attempt 1)") in debug
    assert ("debug", "job 1 (ok -> sh): succeeded") in debug

    quiet = messages(run_dispatch(tmp_path / "b", settings="settings: {log_level: error}\n"))
    assert {level for level, _ in quiet} == {"error"}

    env_wins = messages(run_dispatch(tmp_path / "c", settings="settings: {log_level: error}\n",
                                     env={"BRIDGE_LOG_LEVEL": "debug"}))
    assert ("debug", "job 1 (ok -> sh): succeeded") in env_wins

    flag_wins = messages(run_dispatch(tmp_path / "d", settings="settings: {log_level: debug}\n",
                                      env={"BRIDGE_LOG_LEVEL": "debug"},
                                      flags=("--log-level", "warning")))
    assert {level for level, _ in flag_wins} == {"error"}


def test_an_invalid_log_level_is_refused_with_its_line(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES + "settings:\n  log_level: verbose\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "bridge", "check", str(rules)], capture_output=True,
                         text=True, env={**os.environ, "GH_SECRET": "x"})
    assert out.returncode == 1
    assert "rules.yaml:10: settings.log_level must be one of debug, info, warning, error, " \
           "not 'verbose'" in out.stderr
    bad_flag = subprocess.run([sys.executable, "-m", "bridge", "--log-level", "loud", "check",
                               str(rules)], capture_output=True, text=True)
    assert bad_flag.returncode == 2 and "--log-level" in bad_flag.stderr
    bad_env = subprocess.run([sys.executable, "-m", "bridge", "dispatch", "--rules", str(rules)],
                             capture_output=True, text=True,
                             env={**os.environ, "BRIDGE_LOG_LEVEL": "loud", "GH_SECRET": "x"})
    assert bad_env.returncode == 2 and "'loud' is not one of" in bad_env.stderr


def test_under_journald_every_json_line_starts_with_its_syslog_priority(tmp_path):
    text = run_dispatch(tmp_path, journal=True, flags=("--log-level", "debug"))
    lines = text.splitlines()
    assert lines
    for line in lines:
        m = re.match(r"^<([0-7])>(\{.*\})$", line)
        assert m, line
        level = json.loads(m.group(2))["level"]
        assert int(m.group(1)) == {"debug": 7, "info": 6, "warning": 4, "error": 3}[level], line
    prefixes = {line[:3] for line in lines}
    assert {"<7>", "<6>", "<3>"} <= prefixes


def test_a_journal_stream_that_is_not_ours_adds_no_prefix(tmp_path):
    """A child whose output is redirected still inherits JOURNAL_STREAM: it must not prefix."""
    text = run_dispatch(tmp_path, env={"JOURNAL_STREAM": "8:12345"})
    assert all(line.startswith("{") for line in text.splitlines())


def read_pty(fd: int, until, timeout: float = 60.0) -> str:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(out.decode("utf-8", "replace")):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out.decode("utf-8", "replace")


def run_on_a_terminal(tmp_path, flags=()) -> str:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    state = tmp_path / "var"
    queue_jobs(state, "d-tty")
    controller, terminal = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "JOURNAL_"))}
    environ.update({"GH_SECRET": "x", "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "bridge", *flags, "dispatch", "--rules",
                             str(rules), "--state-dir", str(state)], env=environ,
                            stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    try:
        return read_pty(controller, lambda s: "dead letter" in s and "exit code 1" in s)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        os.close(controller)


def test_on_a_terminal_lines_are_readable_text_with_the_delivery_id(tmp_path):
    text = run_on_a_terminal(tmp_path)
    lines = [l for l in text.replace("\r\n", "\n").splitlines() if l.strip()]
    failed = [l for l in lines if "exit code 1" in l]
    assert len(failed) == 1
    assert re.match(r"^\d\d:\d\d:\d\d INFO +\[d-tty\] job 2 \(bad -> sh\): failed: exit code 1 ",
                    failed[0]), failed[0]
    assert "job=2" in failed[0] and "rule=bad" in failed[0]
    assert not any(l.lstrip().startswith("{") for l in lines)
    dead = [l for l in lines if "dead letter" in l]
    assert re.match(r"^\d\d:\d\d:\d\d ERROR +\[d-tty\] job 3 ", dead[0]), dead[0]


def test_log_format_json_on_a_terminal(tmp_path):
    text = run_on_a_terminal(tmp_path, flags=("--log-format", "json"))
    lines = [l for l in text.replace("\r\n", "\n").splitlines() if l.strip()]
    parsed = [json.loads(l) for l in lines]
    assert any(p["delivery"] == "d-tty" and p["message"].endswith("failed: exit code 1")
               for p in parsed)


def test_bridge_serve_under_journald_prefixes_every_line_of_every_process(tmp_path):
    """Supervisor, gunicorn (master, workers, its own error log) and dispatcher: every line on the
    journal stream carries its priority, so `journalctl -p warning` sees the refusals."""
    import requests

    from helpers.payloads import load_payload, sign_github
    from helpers.ports import free_port
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    port = free_port()
    out_path = tmp_path / "journal.log"
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("BRIDGE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    with open(out_path, "wb") as out:
        st = os.fstat(out.fileno())
        environ.update({"GH_SECRET": "s3cret-value", "PYTHONUNBUFFERED": "1",
                        "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "NO_PROXY": "127.0.0.1"})
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve", "--rules", str(rules),
                                 "--state-dir", str(tmp_path / "var"), "--bind",
                                 f"127.0.0.1:{port}", "--workers", "1"],
                                env=environ, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"

            def up():
                try:
                    return requests.get(f"{url}/healthz", timeout=1).ok
                except requests.RequestException:
                    return proc.poll() is not None
            wait_for(up, timeout=60, what="cibridge serve to answer")
            body, headers = load_payload("github/push__goscm-branch.json")
            headers = {**headers, **sign_github(body, "wrong-secret")}
            assert requests.post(f"{url}/hooks/github", data=body, headers=headers,
                                 timeout=10).status_code == 401
            rules.write_text(RULES + "  - name: broken\n    on: {repo: 1}\n", encoding="utf-8")
            proc.send_signal(signal.SIGHUP)    # a refused reload: errors
            wait_for(lambda: "reload refused" in out_path.read_text(), timeout=30,
                     what="the refused reload")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    lines = out_path.read_text(encoding="utf-8").splitlines()
    assert lines and all(re.match(r"^<[0-7]>", line) for line in lines), \
        [line for line in lines if not re.match(r"^<[0-7]>", line)]
    assert any(line.startswith("<6>bridge: listening on") for line in lines)
    refused = [line for line in lines if '"refused: X-Hub-Signature-256' in line]
    assert refused and all(line.startswith("<4>{") for line in refused)
    assert any(line.startswith("<3>{") and "reload refused" in line for line in lines)
