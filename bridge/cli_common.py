"""Shared pieces of the `bridge` commands: options, defaults, loading rules and opening the store.

Input: command-line options and the BRIDGE_* environment. Output: a Config or a Store, or exit 1
with every problem printed.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .errors import ConfigError

DEFAULT_RULES = "rules.yaml"
DEFAULT_STATE = "var"
DEFAULT_BIND = "127.0.0.1:8080"


def rules_option(f):
    return click.option("--rules", "rules_path", envvar="BRIDGE_RULES", default=DEFAULT_RULES,
                        show_default=True, type=click.Path(dir_okay=False),
                        help="rules.yaml to load (env BRIDGE_RULES)")(f)


def absolute_state_dir(path) -> str:
    """`path` made absolute against the current directory, once, when a command starts: every
    part (the SQLite file, git run inside a mirror with GIT_DIR set, the children `bridge serve`
    starts) then sees the same directory whatever its own working directory is."""
    return os.path.abspath(os.fspath(path))


def default_state_dir() -> str:
    """The state directory when no --state-dir is given: BRIDGE_STATE_DIR, systemd's
    STATE_DIRECTORY (its first entry), else ./var; always absolute."""
    return absolute_state_dir(os.environ.get("BRIDGE_STATE_DIR")
                              or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE)


def state_dir_callback(ctx, param, value):
    """click callback for every --state-dir: the absolute path, or None when not given."""
    return None if value in (None, "") else absolute_state_dir(value)


def state_option(f):
    return click.option("--state-dir", default=None, callback=state_dir_callback,
                        help="state directory: SQLite database, git mirrors (env BRIDGE_STATE_DIR, "
                             "systemd STATE_DIRECTORY; default ./var); made absolute at start")(f)


def fail_with_problems(rules_path, problems, hint: str | None = None):
    """Every problem on stderr, then the count; exit 1."""
    for problem in problems:
        click.echo(problem, err=True)
    if hint:
        click.echo(hint, err=True)
    click.echo(f"{rules_path}: {len(problems)} problem(s); nothing started", err=True)
    sys.exit(1)


def load_or_exit(rules_path, *, resolve_secrets: bool = True, hint=None):
    """The rules, or exit 1 with every problem. `hint(problems)` may add a line before the count."""
    from .config import load_config
    try:
        return load_config(rules_path, resolve_secrets=resolve_secrets)
    except ConfigError as exc:
        fail_with_problems(rules_path, exc.problems, hint(exc.problems) if hint else None)


def load_accepted_or_exit(rules_path, state_dir):
    """The rules `bridge web` / `bridge dispatch` start on: the last-good snapshot in the state
    directory (rules.yaml itself only at the very first start), or exit 1 with every problem."""
    from .serve import load_accepted
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    try:
        return load_accepted(rules_path, state_dir)[0]
    except ConfigError as exc:
        fail_with_problems(rules_path, exc.problems)


def open_store(config, state_dir, create=True, **kw):
    """The store, or exit 1 with its message (database down, schema to upgrade) - no traceback."""
    from .errors import StoreUnavailable
    from .store import Store
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    try:
        return Store.open(config.database_url(state_dir), durability=config.settings.durability,
                          create=create, **kw)
    except StoreUnavailable as exc:
        click.echo(f"bridge: {exc}", err=True)
        sys.exit(1)
