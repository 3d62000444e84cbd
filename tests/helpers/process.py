"""Test support: a real `cibridge serve` (supervisor + gunicorn + dispatcher) on 127.0.0.1.

Input: a rules.yaml text and environment. Output: a running bridge the test talks to over real
HTTP, its process tree (to kill parts of it by pid), its logs and its store. Everything started
here is stopped by its pid in `stop()`.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from helpers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class BridgeProcess:
    def __init__(self, directory: Path, rules_text: str, *, env: dict | None = None,
                 workers: int = 2, dispatcher: bool = True, command: str = "serve"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rules = self.dir / "rules.yaml"
        self.rules.write_text(rules_text, encoding="utf-8")
        self.state = self.dir / "var"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {}), "NO_PROXY": "127.0.0.1,localhost",
                    "PYTHONUNBUFFERED": "1"}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.workers = workers
        self.dispatcher = dispatcher
        self.command = command
        self.log_path = self.dir / "bridge.log"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "bridge", self.command, "--rules", str(self.rules),
                "--state-dir", str(self.state), "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers)]
        if self.command == "serve" and not self.dispatcher:
            argv.append("--no-dispatcher")
        return argv

    def start(self, timeout: float = 30.0) -> "BridgeProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), cwd=self.dir, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"bridge did not answer within {timeout}s:\n{self.logs()[-3000:]}")

    # -- the process tree ---------------------------------------------------------------

    def child(self, role: str) -> int | None:
        """pid of the supervisor's `web` (gunicorn master) or `dispatch` child."""
        for pid in children(self.proc.pid):
            if f"-m bridge {role} " in cmdline(pid):
                return pid
        return None

    def web_workers(self) -> list[int]:
        master = self.child("web")
        return children(master) if master else []

    def signal(self, sig=signal.SIGHUP) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            tree = [self.proc.pid] + children(self.proc.pid)
            for pid in tree:
                for c in children(pid):
                    _kill(c)
                _kill(pid)
            return self.proc.wait(5)
        finally:
            self._log.close()
            from bridge.metrics import metrics_dir
            shutil.rmtree(metrics_dir(self.state), ignore_errors=True)   # /dev/shm is memory

    # -- talking to it ------------------------------------------------------------------

    def post(self, source: str, body: bytes, headers: dict, **kw) -> requests.Response:
        return requests.post(f"{self.url}/hooks/{source}", data=body, headers=headers,
                             timeout=kw.pop("timeout", 10), **kw)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def store(self):
        from bridge.store import Store
        return Store.open(f"sqlite:///{self.state / 'bridge.db'}", durability="normal", create=False)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
