"""Shared pieces of the `cibridge` commands: options, defaults and loading rules (opening the
store: stores.py, so that `cibridge check` imports no database library).

Input: command-line options and the BRIDGE_* environment. Output: a Config, or exit 1 with every
problem printed.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from bridge.config.load import load_config
from bridge.config.snapshot import load_accepted
from bridge.errors import BridgeError, ConfigError
from bridge.globs import validate_patterns
from bridge.policies import parse_duration

DEFAULT_RULES = "rules.yaml"
DEFAULT_STATE = "var"
DEFAULT_BIND = "127.0.0.1:8080"


def rules_option(f):
    return click.option("--rules", "rules_path", envvar="BRIDGE_RULES", default=DEFAULT_RULES,
                        show_default=True, type=click.Path(dir_okay=False),
                        help="rules.yaml to load (env BRIDGE_RULES)")(f)


def absolute_state_dir(path) -> str:
    """`path` made absolute against the current directory, once, when a command starts: every
    part (the SQLite file, git run inside a mirror with GIT_DIR set, the children `cibridge serve`
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
    try:
        return load_config(rules_path, resolve_secrets=resolve_secrets)
    except ConfigError as exc:
        fail_with_problems(rules_path, exc.problems, hint(exc.problems) if hint else None)


def load_rules_or_exit(rules_path, *, resolve_secrets: bool):
    """load_or_exit for check and explain: optionally reading no secret (explain verifies none),
    and pointing at --no-secrets when only unreadable secrets failed a check."""
    def hint(problems):
        if resolve_secrets and all(": secret ${" in p for p in problems):
            return ("(only secrets are missing: `cibridge check --no-secrets` checks a rules file "
                    "on a machine that holds none, such as a rules repository's CI)")
        return None
    return load_or_exit(rules_path, resolve_secrets=resolve_secrets, hint=hint)


def load_accepted_or_exit(rules_path, state_dir):
    """The rules `cibridge web` / `cibridge dispatch` start on: the last-good snapshot in the state
    directory (rules.yaml itself only at the very first start), or exit 1 with every problem."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    try:
        return load_accepted(rules_path, state_dir)[0]
    except ConfigError as exc:
        fail_with_problems(rules_path, exc.problems)


def ago(ts) -> str:
    """An epoch time as local `YYYY-MM-DD HH:MM:SS` for the operator tables; "-" for none."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


# --- option callbacks of the operator commands ---------------------------------------------------

def glob_option(ctx, param, value):
    """click callback: a glob of the rules' syntax (--repo, --rule), or a usage error."""
    if value is None:
        return None
    problems = validate_patterns([value])
    if problems:
        raise click.BadParameter(problems[0])
    return value


def parsed_option(parse):
    """A click callback: the value through `parse` (parse_duration, parse_size), or a usage error."""
    def convert(ctx, param, value):
        if value is None:
            return None
        try:
            return parse(value)
        except BridgeError as exc:
            raise click.BadParameter(str(exc)) from None
    return convert


#: click callback: a duration (30m, 1h, 2d) in seconds, or a usage error.
duration_option = parsed_option(parse_duration)
