"""Fixtures of the git mirror tests: `git daemon` on 127.0.0.1, upstream repositories reached over
file:// or git://, and a Mirrors directory with an isolated git configuration."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from bridge.dispatch.mirror import Mirrors
from helpers.git import GIT_ENV, ISOLATED, Upstream
from helpers.ports import free_port


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """`git daemon` on 127.0.0.1 serving every repository under its base path."""
    base = tmp_path_factory.mktemp("served")
    port = free_port()
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen(
        [f"{exec_path}/git-daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}",
         "--export-all", f"--base-path={base}", "--informative-errors", str(base)],
        env=GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.05)
    yield base, port
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture
def make_upstream(tmp_path, request):
    """Upstream repositories, reached over file:// or git://127.0.0.1 (served by git daemon)."""
    made = []

    def make(transport: str = "file") -> Upstream:
        name = f"{request.node.name.replace('[', '-').strip(']')}-{len(made)}"
        if transport == "git":
            base, port = request.getfixturevalue("daemon")
            up = Upstream(base / name, f"git://127.0.0.1:{port}/{name}")
        else:
            up = Upstream(tmp_path / name, f"file://{tmp_path / name}")
        made.append(up)
        return up
    return make


@pytest.fixture
def mirrors(tmp_path):
    return Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ISOLATED)
