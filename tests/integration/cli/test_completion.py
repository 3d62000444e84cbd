"""Shell completion as the README documents it (click's `_CIBRIDGE_COMPLETE`): the scripts for
bash, zsh and fish, and the completions a shell asks for."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BRIDGE = str(Path(sys.executable).with_name("cibridge"))


def complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "_CIBRIDGE_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(cword)}
    out = subprocess.run([BRIDGE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split(",", 1)[1] for line in out.stdout.splitlines()]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_documented_completion_scripts_are_printed(shell):
    env = {**os.environ, "_CIBRIDGE_COMPLETE": f"{shell}_source"}
    out = subprocess.run([BRIDGE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "_CIBRIDGE_COMPLETE" in out.stdout, out.stderr


def test_commands_options_and_choices_complete():
    assert "schema" in complete("bridge sch", 1)
    assert {"serve", "check", "deliveries"} <= set(complete("bridge ", 1))
    assert complete("cibridge serve --log-level ", 3) == ["debug", "info", "warning", "error"]
    assert "--version" in complete("bridge --", 1) and "--log-level" in complete("bridge --", 1)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_loads_the_script_and_completes(tmp_path):
    script = subprocess.run([BRIDGE], env={**os.environ, "_CIBRIDGE_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=60).stdout
    (tmp_path / "complete.bash").write_text(script)
    probe = (f'source {tmp_path / "complete.bash"}; COMP_WORDS=(cibridge sch); COMP_CWORD=1; '
             f'_cibridge_completion cibridge; printf "%s\\n" "${{COMPREPLY[@]}}"')
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{Path(BRIDGE).parent}:{os.environ['PATH']}"})
    assert out.stdout.split() == ["schema"], out.stderr
