"""The web port of `cibridge serve` and `cibridge web`: bound by the bridge itself before anything
starts. A busy port is one line and exit 1 at once, with nothing written to the state directory;
the port stays open while the supervisor restarts a killed gunicorn, so no client is refused.

Real processes on 127.0.0.1: the bridge, gunicorn, plain sockets holding a port.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

from helpers.rules import BUILD_EVERY_PUSH as RULES
from helpers.rules import GITHUB_SECRET, SECRET_ENV
from helpers.payloads import load_payload, sign_github
from helpers.process import ROOT, BridgeProcess, children, wait_for


def run_bridge(*args, timeout=60) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bridge", *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **SECRET_ENV})
    return done, time.monotonic() - t0


@pytest.fixture
def bridge(tmp_path):
    bp = BridgeProcess(tmp_path / "first", RULES, env=SECRET_ENV)
    yield bp.start()
    bp.stop()


@pytest.mark.parametrize("command", ["serve", "web"])
def test_a_busy_port_is_one_line_and_exit_1_at_once_touching_nothing(tmp_path, bridge, command):
    """A second instance on the first one's port and state directory, with an edited rules file:
    before, it printed `listening on` (the first one answered) while its gunicorn logged
    "Connection in use", and it recorded its edit as the first one's last good rules."""
    snapshot = (bridge.state / "rules.last-good.yaml").read_bytes()
    status = (bridge.state / "rules-status.json").read_bytes()
    edited = tmp_path / "edited.yaml"
    edited.write_text(RULES.replace("name: build", "name: build-edited"))
    done, took = run_bridge(command, "--rules", edited, "--state-dir", bridge.state,
                            "--bind", f"127.0.0.1:{bridge.port}", timeout=60)
    assert done.returncode == 1, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"bridge: cannot listen on 127.0.0.1:{bridge.port}: the address is already in "
                     "use (another bridge, or another program, listens there); nothing started"], lines
    assert took < 20   # python's start-up on a loaded machine; gunicorn alone retries for 5 s
    assert (bridge.state / "rules.last-good.yaml").read_bytes() == snapshot
    assert (bridge.state / "rules-status.json").read_bytes() == status
    assert requests.get(f"{bridge.url}/healthz", timeout=5).status_code == 200   # first one unharmed


def test_a_port_held_by_another_program_is_refused_too(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    (tmp_path / "rules.yaml").write_text(RULES)
    try:
        done, _ = run_bridge("serve", "--rules", tmp_path / "rules.yaml", "--state-dir",
                             tmp_path / "var", "--bind", f"127.0.0.1:{port}")
    finally:
        holder.close()
    assert done.returncode == 1 and "already in use" in done.stderr
    assert "listening on" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "var" / "rules.last-good.yaml").exists()


def test_port_0_takes_a_free_port_and_says_which(tmp_path):
    bp = BridgeProcess(tmp_path, RULES, env=SECRET_ENV)
    bp.port = 0
    bp._log = open(bp.log_path, "ab")
    bp.proc = subprocess.Popen(bp.argv(), cwd=bp.dir, env=bp.env, stdout=bp._log,
                               stderr=subprocess.STDOUT)
    try:
        line = wait_for(lambda: next((ln for ln in bp.logs().splitlines()
                                      if ln.startswith("bridge: listening on http://127.0.0.1:")), None),
                        timeout=60, what="the listening line")
        port = int(line.split("http://127.0.0.1:", 1)[1].split(" ", 1)[0])
        assert port != 0
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        bp.stop()


class Deliveries:
    """Signed pushes from a few threads, each on a fresh connection (as GitHub sends them),
    until stopped; every answer recorded: a status code, or the exception's name."""

    def __init__(self, url: str, threads: int = 3):
        self.url = url
        self.answers: list[tuple[float, object]] = []
        self.stopped = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._body, self._headers = load_payload("github/push__f110-single-commit.json")

    def _run(self):
        while not self.stopped.is_set():
            body = self._body.replace(json.loads(self._body)["after"].encode(),
                                      os.urandom(20).hex().encode())
            headers = {**self._headers, "X-GitHub-Delivery": str(uuid.uuid4()), "Connection": "close",
                       **sign_github(body, GITHUB_SECRET)}
            try:
                answer = requests.post(f"{self.url}/hooks/github", data=body, headers=headers,
                                       timeout=30).status_code
            except requests.RequestException as exc:
                answer = f"{type(exc).__name__}: {exc}"
            self.answers.append((time.monotonic(), answer))

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self.stopped.set()
        for t in self._threads:
            t.join(40)


@pytest.mark.slow
def test_sigkill_of_the_gunicorn_master_refuses_no_delivery(tmp_path):
    """Before, the port was closed for seconds (the killed master's workers held it, then
    nobody): GitHub does not retry a refused connection. Now the supervisor holds the socket:
    clients wait in its backlog and the new gunicorn answers every one."""
    bp = BridgeProcess(tmp_path, RULES, env=SECRET_ENV).start()
    try:
        traffic = Deliveries(bp.url).start()
        wait_for(lambda: len(traffic.answers) >= 10, timeout=30, what="deliveries before the kill")
        master = bp.child("web")
        os.kill(master, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: bp.child("web") not in (None, master), timeout=30, what="a new web child")
        new_master = bp.child("web")
        wait_for(lambda: len(children(new_master)) == bp.workers, timeout=30, what="its workers")
        # The new gunicorn answers a good while: every client that waited has been served.
        wait_for(lambda: sum(1 for t, a in traffic.answers if t > time.monotonic() - 1 and a == 202) >= 3
                 and time.monotonic() - killed_at > 3, timeout=60, what="deliveries after the restart")
        traffic.stop()
    finally:
        bp.stop()
    answers = [a for _, a in traffic.answers]
    failed = [a for a in answers if a != 202]
    assert not failed, failed[:5]
    after_kill = [a for t, a in traffic.answers if t > killed_at]
    assert len(after_kill) >= 3 and len(answers) >= 20
