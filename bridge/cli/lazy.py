"""The `cibridge` group that imports a command's module only when that command runs (click's
documented LazyGroup pattern): `cibridge --version` and `--help` import click and little else.

Input: a table name -> (module, attribute, first paragraph of the command's help). Output: the
click command, imported by name through importlib when click asks for it; `--help` lists the
commands from the table (tests/integration/cli/test_lazy_cli.py holds the table to the commands' own help).
"""
from __future__ import annotations

import importlib
from gettext import gettext as _

import click


class LazyGroup(click.Group):
    """A click Group whose `lazy` commands are imported on first use. Help listings use the
    table's help text, which `short_help_for` shortens exactly as click shortens a command's."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx):
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attr, _ = self.lazy[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx, formatter):
        """click's own listing (Group.format_commands), with the help from the table."""
        names = [name for name in self.list_commands(ctx)
                 if name in self.commands or name in self.lazy]
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit)))
            else:
                rows.append((name, short_help_for(self.lazy[name][2], limit)))
        if rows:
            with formatter.section(_("Commands")):
                formatter.write_dl(rows)


def short_help_for(help_text: str, limit: int) -> str:
    """What click's Command.get_short_help_str(limit) gives for a command whose help is `help_text`
    (asked of a stand-in command: the same code, not a copy of it)."""
    return click.Command(None, help=help_text).get_short_help_str(limit)
