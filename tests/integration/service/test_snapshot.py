"""The accepted rules at a child's start, in process (no server): the file when the snapshot no
longer loads, the snapshot named when neither loads, CRLF, a supervised child reloading what the
supervisor accepted."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers.process import ROOT


# --- the accepted rules at a child's start (no server needed) --------------------------------------

ROTATING_RULES = """\
sources:
  github: {provider: github, secrets: ["${file:%s}"]}
targets:
  local: {kind: exec}
rules:
  - name: all
    on: {repo: "**", branches: ["**"]}
    run: {target: local, command: ["/bin/true"]}
"""


def test_a_child_starts_on_the_file_when_the_accepted_rules_no_longer_load(tmp_path):
    """A secret rotated in the file (old secret file removed) without a reload: the snapshot
    names a secret that is gone. A child restarting then takes the valid file (and records it)
    instead of dying five times and taking the service with it."""
    from bridge.config.snapshot import LAST_GOOD, load_accepted, read_status
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "old-secret").write_text("s1\n")
    rules.write_text(ROTATING_RULES % "old-secret")
    first, _ = load_accepted(rules, state)                      # first start: records the file
    (tmp_path / "new-secret").write_text("s2\n")
    rules.write_text(ROTATING_RULES % "new-secret")
    (tmp_path / "old-secret").unlink()
    config, problems = load_accepted(rules, state)
    assert problems == [] and config.version != first.version
    assert "new-secret" in (state / LAST_GOOD).read_text()
    assert read_status(state)["version"] == config.version


def test_a_web_worker_boots_on_the_file_when_the_accepted_rules_no_longer_load(tmp_path):
    """The same fallback in make_app, which every gunicorn worker runs at boot (in a process of
    its own: it sets up logging and metrics)."""
    from bridge.config.snapshot import load_accepted
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "old-secret").write_text("s1\n")
    rules.write_text(ROTATING_RULES % "old-secret")
    load_accepted(rules, state)
    (tmp_path / "new-secret").write_text("s2\n")
    rules.write_text(ROTATING_RULES % "new-secret")
    (tmp_path / "old-secret").unlink()
    code = ("import sys; from bridge.service.web import make_app; "
            "app = make_app(sys.argv[1], sys.argv[2]); "
            "print('app:', type(app).__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(rules), str(state)], capture_output=True,
                         text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "RUNTIME_DIRECTORY": str(tmp_path / "run")})
    assert out.returncode == 0, out.stderr
    assert "app: Flask" in out.stdout.splitlines(), out.stdout
    assert "the last accepted rules no longer load" in out.stdout


def test_a_child_start_names_the_snapshot_when_neither_it_nor_the_file_loads(tmp_path):
    from bridge.errors import ConfigError
    from bridge.config.snapshot import LAST_GOOD, load_accepted
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "old-secret").write_text("s1\n")
    rules.write_text(ROTATING_RULES % "old-secret")
    load_accepted(rules, state)
    (tmp_path / "old-secret").unlink()
    rules.write_text("rules: [\n")
    with pytest.raises(ConfigError) as err:
        load_accepted(rules, state)
    assert any(p.startswith(f"{LAST_GOOD} (the last accepted rules): ") and "old-secret" in p
               for p in err.value.problems), err.value.problems
    assert any(p.startswith("rules.yaml:") for p in err.value.problems)


def test_crlf_rules_keep_one_version_from_file_to_snapshot(tmp_path, caplog):
    from bridge.config.load import load_config
    from bridge.config.snapshot import load_accepted
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "secret").write_text("s1\n")
    rules.write_bytes((ROTATING_RULES % "secret").replace("\n", "\r\n").encode())
    first, _ = load_accepted(rules, state)
    again, _ = load_accepted(rules, state)                      # a restart, from the snapshot
    assert first.version == again.version == load_config(rules).version
    assert "was edited since" not in caplog.text


def test_a_supervised_child_reloads_what_the_supervisor_accepted_not_the_file(tmp_path, monkeypatch):
    """Under `cibridge serve` the supervisor validates rules.yaml and records the snapshot before
    it passes SIGHUP on; a child that read the file again could take an edit made in between."""
    from bridge.config.snapshot import LAST_GOOD, SUPERVISED, load_accepted, validate_and_record
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "secret").write_text("s1\n")
    rules.write_text(ROTATING_RULES % "secret")
    accepted, _ = load_accepted(rules, state)
    rules.write_text("rules: [\n")                  # edited after the supervisor's check
    monkeypatch.setenv(SUPERVISED, "1")
    assert validate_and_record(rules, state) == []
    assert "secret" in (state / LAST_GOOD).read_text()
    assert load_accepted(rules, state)[0].version == accepted.version
    monkeypatch.delenv(SUPERVISED)
    assert validate_and_record(rules, state)           # a split unit checks the file itself
