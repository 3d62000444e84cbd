"""Which rules a start runs when rules.yaml is invalid: the last good version of that same file
(said exactly: file and version), never the last good rules of another file.

Real `cibridge serve` / `cibridge dispatch` processes and real state directories.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from helpers.rules import BUILD_EVERY_PUSH as RULES
from helpers.rules import SECRET_ENV
from helpers.ports import free_port
from helpers.process import ROOT, BridgeProcess, wait_for

BROKEN = RULES.replace("target: mem,", "target: no-such-target,")


def bridge(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **SECRET_ENV})


@pytest.fixture
def accepted(tmp_path, monkeypatch):
    """A state directory whose last good rules came from tmp_path/a/rules.yaml."""
    from bridge.config.snapshot import load_accepted
    for k, v in SECRET_ENV.items():
        monkeypatch.setenv(k, v)
    a = tmp_path / "a" / "rules.yaml"
    a.parent.mkdir()
    a.write_text(RULES)
    state = tmp_path / "var"
    state.mkdir()
    config, _ = load_accepted(a, state)
    return a, state, config


def test_the_snapshot_records_the_file_it_came_from(accepted):
    from bridge.config.snapshot import snapshot_source
    a, state, config = accepted
    source = json.loads((state / "rules.last-good.json").read_text())
    assert source["path"] == str(a) and source["version"] == config.version
    assert snapshot_source(state)["path"] == str(a)


@pytest.mark.parametrize("command", ["serve", "dispatch", "web"])
def test_an_invalid_file_never_starts_on_another_files_last_good_rules(tmp_path, accepted, command):
    """Before: it started on a/rules.yaml's rules and said `(rules b/rules.yaml ...)`."""
    a, state, _ = accepted
    b = tmp_path / "b" / "rules.yaml"
    b.parent.mkdir()
    b.write_text(BROKEN)
    snapshot = (state / "rules.last-good.yaml").read_text()
    bind = [] if command == "dispatch" else ["--bind", f"127.0.0.1:{free_port()}"]
    done = bridge(command, "--rules", b, "--state-dir", state, *bind)
    assert done.returncode == 1, done
    assert "no-such-target" in done.stderr                           # what is wrong with b
    assert f"came from another file, {a}" in done.stderr             # both paths named
    assert f"not from {b}" in done.stderr and f"--rules {a}" in done.stderr
    assert "nothing started" in done.stderr and "Traceback" not in done.stderr
    assert "listening on" not in done.stderr
    assert (state / "rules.last-good.yaml").read_text() == snapshot   # a's rules untouched


def test_a_valid_other_file_starts_on_itself_and_is_recorded(tmp_path, accepted):
    """`cibridge dispatch` alone (split units) runs the snapshot even when the file differs from
    it, but only its own file's: another file's valid rules are taken as they are."""
    from bridge.config.snapshot import load_accepted, snapshot_source
    a, state, first = accepted
    b = tmp_path / "b" / "rules.yaml"
    b.parent.mkdir()
    b.write_text(RULES.replace("name: build", "name: build-b"))
    config, problems = load_accepted(b, state)
    assert problems == [] and config.version != first.version
    assert snapshot_source(state) == {**snapshot_source(state), "path": str(b),
                                      "version": config.version}


def test_a_snapshot_that_does_not_say_its_file_never_stands_in(tmp_path, accepted):
    """A state directory from before the source was recorded: whose rules they are is unknown."""
    from bridge.errors import ConfigError
    from bridge.config.snapshot import load_accepted
    a, state, _ = accepted
    (state / "rules.last-good.json").unlink()
    a.write_text(BROKEN)
    with pytest.raises(ConfigError) as err:
        load_accepted(a, state)
    assert any("does not record" in p and "refusing to start" in p for p in err.value.problems)


def test_the_same_files_last_good_version_runs_and_the_start_says_so(tmp_path):
    """An edit a reload refused, then a restart: its own last good version runs, and the
    listening line names the file, the version and that the file is not in service."""
    first = BridgeProcess(tmp_path, RULES, env=SECRET_ENV).start()
    version = requests.get(f"{first.url}/readyz", timeout=5).json()["rules_version"]
    assert first.stop() == 0
    line = [ln for ln in first.logs().splitlines() if ln.startswith("bridge: listening on")][-1]
    assert line == (f"bridge: listening on {first.url} (rules {first.rules} version {version}, "
                    f"state {first.state})")

    first.rules.write_text(BROKEN)
    again = BridgeProcess(tmp_path, BROKEN, env=SECRET_ENV)
    again.log_path = tmp_path / "again.log"
    again.start()
    try:
        line = wait_for(lambda: [ln for ln in again.logs().splitlines()
                                 if ln.startswith("bridge: listening on")], what="the listening line")[0]
        assert line == (f"bridge: listening on {again.url} (rules {again.rules} version {version}, its "
                        "last good version: the file as it is now has 1 problem(s) and is not in "
                        f"service, state {again.state})")
        ready = requests.get(f"{again.url}/readyz", timeout=5).json()
        assert ready["rules_version"] == version and ready["rules_reload_error"]
        assert ready["rules_file"] == str(again.rules)
    finally:
        again.stop()
