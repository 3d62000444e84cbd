"""The rules channel of `cibridge serve`'s children (service/handover.py), with real processes: a
child waits for the rules and exits when its parent goes away first; it takes a message only from
its parent, only a sealed memfd of the accepted version, and unpickles nothing but the bridge's
own classes."""
from __future__ import annotations

import io
import os
import pickle
import socket
import subprocess
import sys

import pytest

from helpers.process import ROOT
from helpers.rules import SECRET_ENV

from bridge.config.load import load_config
from bridge.config.snapshot import record_good
from bridge.service.handover import CHANNEL, Handover, _RulesUnpickler

RULES = """\
sources:
  github: {provider: github, secrets: ["${env:GH_SECRET}"]}
targets:
  mem: {kind: memory}
rules:
  - name: build
    on: {repo: f110/test, branches: [main, 'release/**'], paths: ['src/**', '!src/docs/**']}
    run: {target: mem, parameters: {SHA: "${sha}", WHERE: "at ${branch}"}}
"""

# A child's side, alone: what `cibridge web`/`dispatch` do first, then print what they got.
CHILD = """\
import sys
from bridge.logs import setup
from bridge.service.handover import received_at_start
setup()
config = received_at_start(sys.argv[1], sys.argv[2])
print("GOT", None if config is None else config.version, flush=True)
"""


def child(rules, state, channel_fd: int | None) -> subprocess.Popen:
    env = {**os.environ, **SECRET_ENV, "PYTHONPATH": str(ROOT)}
    env.pop(CHANNEL, None)
    fds = ()
    if channel_fd is not None:
        env[CHANNEL] = str(channel_fd)
        fds = (channel_fd,)
    return subprocess.Popen([sys.executable, "-c", CHILD, str(rules), str(state)], env=env,
                            pass_fds=fds, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc) -> tuple[int, list[str], str]:
    """(exit code, the GOT line's words, the whole output: logs and all)."""
    out, _ = proc.communicate(timeout=60)
    got = [line.split() for line in out.splitlines() if line.startswith("GOT ")]
    return proc.returncode, got[0] if got else [], out


@pytest.fixture
def accepted(tmp_path):
    rules, state = tmp_path / "rules.yaml", tmp_path / "var"
    rules.write_text(RULES)
    state.mkdir()
    config = load_config(rules, environ=SECRET_ENV)
    record_good(state, config, RULES, rules)
    return rules, state, config


def test_a_child_takes_the_accepted_rules_from_its_parent(accepted):
    rules, state, config = accepted
    handover = Handover()
    handover.publish(config)
    theirs = handover.channel("web")
    proc = child(rules, state, theirs.fileno())
    theirs.close()
    code, got, err = finish(proc)
    handover.close()
    assert code == 0, err
    assert got == ["GOT", config.version]
    assert "handed over by cibridge serve" in err and SECRET_ENV["GH_SECRET"] not in err


def test_a_child_waits_and_exits_when_its_parent_stops_before_handing_over(accepted):
    rules, state, _ = accepted
    handover = Handover()              # nothing published yet: the child waits
    theirs = handover.channel("dispatch")
    proc = child(rules, state, theirs.fileno())
    theirs.close()
    handover.close()                   # the supervisor goes away
    code, got, err = finish(proc)
    assert code == 1 and got == []
    assert "cibridge serve stopped before it handed over the rules" in err


def test_rules_of_another_version_are_loaded_by_the_child_itself(accepted, tmp_path):
    rules, state, _ = accepted
    other = load_config(rules, text=RULES.replace("name: build", "name: other"), environ=SECRET_ENV)
    handover = Handover()
    handover.publish(other)
    theirs = handover.channel("web")
    proc = child(rules, state, theirs.fileno())
    theirs.close()
    code, got, err = finish(proc)
    handover.close()
    assert code == 0 and got == ["GOT", "None"]
    assert "are not the accepted ones" in err


def test_a_channel_not_made_by_the_parent_is_ignored(accepted):
    """A file descriptor that is no socket from the parent (here: stdin) is no rules channel:
    the child loads the rules itself."""
    rules, state, _ = accepted
    proc = child(rules, state, 0)
    code, got, err = finish(proc)
    assert code == 0 and got == ["GOT", "None"]
    assert "is no rules channel from cibridge serve" in err


def test_the_handed_over_rules_match_as_the_loaded_ones(accepted):
    _, _, config = accepted
    again = _RulesUnpickler(io.BytesIO(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))).load()
    assert again.version == config.version and again.sources == config.sources
    rule, original = again.rules[0], config.rules[0]
    assert rule.render({"sha": "abc", "branch": "main"}) == {
        "target": "mem", "parameters": {"SHA": "abc", "WHERE": "at main"}}
    assert rule.branches.matches("release/1.2") and not rule.branches.matches("dev")
    assert rule.paths.matches("src/a.py") and not rule.paths.matches("src/docs/x.md")
    assert rule.branches.first_match("release/1") == original.branches.first_match("release/1")


class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_the_unpickler_constructs_only_the_bridges_classes():
    with pytest.raises(pickle.UnpicklingError, match="posix.system is not allowed"):
        _RulesUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        _RulesUnpickler(io.BytesIO(pickle.dumps(socket.socket))).load()
