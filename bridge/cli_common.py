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
from .logs import FORMAT_ENV, FORMATS, LEVEL_ENV, LEVELS

DEFAULT_RULES = "rules.yaml"
DEFAULT_STATE = "var"
DEFAULT_BIND = "127.0.0.1:8080"


def rules_option(f):
    return click.option("--rules", "rules_path", envvar="BRIDGE_RULES", default=DEFAULT_RULES,
                        show_default=True, type=click.Path(dir_okay=False),
                        help="rules.yaml to load (env BRIDGE_RULES)")(f)


def default_state_dir() -> str:
    return os.environ.get("BRIDGE_STATE_DIR") or os.environ.get("STATE_DIRECTORY", "").split(":")[0] \
        or DEFAULT_STATE


def state_option(f):
    return click.option("--state-dir", default=None,
                        help="state directory: SQLite database, git mirrors (env BRIDGE_STATE_DIR, "
                             "systemd STATE_DIRECTORY; default ./var)")(f)


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


def _log_env(name):
    """A click callback putting a log option into the environment, where bridge.logs and every
    child process (`bridge serve` starts `bridge web` and `bridge dispatch`) read it."""
    def callback(ctx, param, value):
        if value is not None:
            os.environ[name] = value.lower()
        return value
    return callback


def log_options(f):
    """`--log-level` and `--log-format`, on the group and on the commands that run the service:
    the flag wins over BRIDGE_LOG_LEVEL / BRIDGE_LOG_FORMAT, which win over settings.log_level."""
    f = click.option("--log-format", type=click.Choice(FORMATS, case_sensitive=False), default=None,
                     envvar=FORMAT_ENV, expose_value=False, is_eager=True, callback=_log_env(FORMAT_ENV),
                     help="log lines as JSON or text; auto (default): text on a terminal, "
                          "else JSON (env BRIDGE_LOG_FORMAT)")(f)
    return click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), default=None,
                        envvar=LEVEL_ENV, expose_value=False, is_eager=True, callback=_log_env(LEVEL_ENV),
                        help="debug, info, warning or error (env BRIDGE_LOG_LEVEL, then "
                             "settings.log_level; default info)")(f)
