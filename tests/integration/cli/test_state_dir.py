"""The state directory is made absolute once, when a command starts: --state-dir, the
BRIDGE_STATE_DIR / STATE_DIRECTORY fallbacks and ./var alike (click's runner, real files)."""
from __future__ import annotations

import os

from click.testing import CliRunner

from bridge.cli.common import default_state_dir
from bridge.cli.main import cli
from bridge.dispatch.mirror import Mirrors


def test_every_form_of_the_state_dir_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BRIDGE_STATE_DIR", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert default_state_dir() == str(tmp_path / "var")
    monkeypatch.setenv("STATE_DIRECTORY", "state:other")
    assert default_state_dir() == str(tmp_path / "state")
    monkeypatch.setenv("BRIDGE_STATE_DIR", "rel/dir")
    assert default_state_dir() == str(tmp_path / "rel" / "dir")
    for args in (["mirrors", "list", "--state-dir", "var"], ["mirrors", "list"]):
        done = CliRunner().invoke(cli, args)
        expected = tmp_path / ("var" if "--state-dir" in args else "rel/dir") / "mirrors"
        assert done.exit_code == 0 and done.output == f"no mirrors in {expected}\n", done.output
    assert Mirrors("var/mirrors").root == tmp_path / "var" / "mirrors"
    assert os.path.isabs(default_state_dir())
