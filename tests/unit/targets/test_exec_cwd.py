"""An exec target with no `cwd:` runs in the state directory (writable under the systemd units'
sandbox), not in the dispatcher's working directory; a `cwd:` still wins. Real `cibridge dispatch`
started from "/", as a unit without WorkingDirectory= would be."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bridge.store import Store
from helpers.process import wait_for
from helpers.store import new_delivery, new_job

pytestmark = pytest.mark.slow


def test_exec_without_cwd_runs_in_the_state_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""\
sources:
  github: {{provider: github, secrets: ["${{env:GH_SECRET}}"]}}
targets:
  sh: {{kind: exec}}
  there: {{kind: exec, cwd: "{elsewhere}"}}
rules:
  - name: here
    on: {{repo: "**"}}
    run: {{target: sh, command: ["pwd"]}}
""")
    state = tmp_path / "var"
    state.mkdir()
    url = f"sqlite:///{state / 'bridge.db'}"
    store = Store.open(url, durability="normal")
    store.ingest(new_delivery("d-cwd"), [new_job("here", "sh", "exec", command=["pwd"]),
                                         new_job("there", "there", "exec", command=["pwd"])])
    env = {**os.environ, "GH_SECRET": "x", "PYTHONPATH": os.pathsep.join(sys.path)}
    # A relative --state-dir, resolved against the directory the dispatcher starts in.
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "dispatch", "--rules", str(rules),
                             "--state-dir", os.path.relpath(state, "/")], cwd="/", env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def done():
            jobs = store.get_delivery("d-cwd")["jobs"]
            return jobs if all(j["state"] == "succeeded" for j in jobs) else None
        jobs = wait_for(done, timeout=60, what="both jobs to succeed")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        store.close()
    output = {j["rule"]: j["detail"]["output"].strip() for j in jobs}
    assert output == {"here": str(state.resolve()), "there": str(elsewhere)}
