"""The lazy `cibridge` group (bridge/cli/lazy.py): every command of the table is the command its
module defines, `--help` lists them exactly as click lists loaded commands, and `--version` and
`--help` import no command module (nor SQLAlchemy, Flask or gunicorn)."""
from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from bridge.cli.main import COMMANDS, cli


def _loaded(name):
    return cli.get_command(click.Context(cli), name)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_table_names_each_command_with_the_first_paragraph_of_its_help(name):
    command = _loaded(name)
    assert isinstance(command, click.Command) and command.name == name
    first = " ".join((command.help or "").split("\n\n")[0].split())
    assert first == COMMANDS[name][2]


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_help_lists_the_commands_as_a_plain_group_of_the_loaded_commands_would(width):
    plain = click.Group(name="cibridge", params=cli.params, help=cli.help,
                        context_settings=cli.context_settings,
                        commands={name: _loaded(name) for name in COMMANDS})
    lazy = CliRunner().invoke(cli, ["--help"], prog_name="cibridge", terminal_width=width)
    eager = CliRunner().invoke(plain, ["--help"], prog_name="cibridge", terminal_width=width)
    assert lazy.exit_code == eager.exit_code == 0
    assert lazy.output == eager.output and "serve " in lazy.output


PROBE = """\
import json, sys
from bridge.cli.main import cli
try:
    cli([sys.argv[1]], prog_name="cibridge")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_no_command_module(flag):
    out = subprocess.run([sys.executable, "-c", PROBE, flag], capture_output=True, text=True,
                         timeout=60)
    modules = set(json.loads(out.stderr.strip().splitlines()[-1]))
    heavy = {"sqlalchemy", "flask", "werkzeug", "gunicorn", "bridge.config", "bridge.store",
             "bridge.cli.common", "bridge.cli.run", "bridge.cli.check"}
    assert "bridge.cli.main" in modules and not (heavy & modules)
