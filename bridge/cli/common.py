"""Shared pieces of the `cibridge` commands: options, defaults, loading rules and opening the store.

Input: command-line options and the BRIDGE_* environment. Output: a Config or a Store, or exit 1
with every problem printed.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from sqlalchemy.engine import make_url

from bridge.config import secrets as secret_refs
from bridge.config.load import load_config, read_rules_text
from bridge.config.snapshot import LAST_GOOD, load_accepted
from bridge.config.yamlload import load
from bridge.errors import BridgeError, ConfigError, SecretError, StoreUnavailable
from bridge.globs import validate_patterns
from bridge.logs import FORMAT_ENV, FORMATS, LEVEL_ENV, LEVELS
from bridge.policies import parse_duration
from bridge.store import Store, open_for

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


def load_accepted_or_exit(rules_path, state_dir):
    """The rules `cibridge web` / `cibridge dispatch` start on: the last-good snapshot in the state
    directory (rules.yaml itself only at the very first start), or exit 1 with every problem."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    try:
        return load_accepted(rules_path, state_dir)[0]
    except ConfigError as exc:
        fail_with_problems(rules_path, exc.problems)


def open_store(config, state_dir, create=True, **kw):
    """The store, or exit 1 with its message (database down, schema to upgrade) - no traceback."""
    try:
        return open_for(config, state_dir, create=create, **kw)
    except StoreUnavailable as exc:
        click.echo(f"bridge: {exc}", err=True)
        sys.exit(1)


# --- the operator commands: the store without the secrets or a valid rules file ----------------

def operator_database_url(rules_path, state_dir, environ=os.environ) -> str:
    """The database `cibridge deliveries`, `retry`, `replay` and `prune` use, found as the service
    finds it but reading no secret except the database URL's own and validating nothing:
    settings.database_url of the rules the service last accepted (the snapshot in the state
    directory), else of rules.yaml (read as YAML only), else BRIDGE_DATABASE_URL, else the
    SQLite file in the state directory. Raises ConfigError naming what could not be read."""
    url = None
    for path, what in ((Path(state_dir) / LAST_GOOD, "the last accepted rules"),
                       (Path(rules_path) if rules_path else None, None)):
        if path is None or not path.is_file():
            continue
        try:
            doc = load(read_rules_text(str(path)))
        except BridgeError:    # ConfigError (unreadable), YamlError (not YAML)
            continue        # unreadable here: the next place, then the defaults
        settings = doc.get("settings") if isinstance(doc, dict) else None
        url = settings.get("database_url") if isinstance(settings, dict) else None
        url = _resolve_url(url, what or str(path), rules_path or path, environ)
        break
    if url:
        return url
    return environ.get("BRIDGE_DATABASE_URL") or f"sqlite:///{Path(state_dir).resolve() / 'bridge.db'}"


def operator_policies(rules_path, state_dir):
    """The targets' and rules' `policy:` the service runs under (the last accepted rules, else
    rules.yaml), read without secrets; None when neither loads (then no reason is given)."""
    for path in (Path(state_dir or default_state_dir()) / LAST_GOOD, Path(rules_path) if rules_path else None):
        if path is None or not path.is_file():
            continue
        try:
            return load_config(str(path), resolve_secrets=False).policies()
        except ConfigError:
            continue
    return None


def _resolve_url(value, where: str, rules_path, environ) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if not secret_refs.is_reference(value):
        return value
    try:
        return secret_refs.resolve(value, environ, os.path.dirname(os.path.abspath(str(rules_path))))
    except SecretError as exc:
        raise ConfigError([f"settings.database_url of {where}: {exc} (the one secret the "
                           "operator commands read)"]) from None


def open_operator_store(rules_path, state_dir):
    """The store for the operator commands (see operator_database_url), or exit 1 with one
    line saying why; nothing is created. No `state_dir`: the default one."""
    state_dir = state_dir or default_state_dir()
    try:
        url = operator_database_url(rules_path, state_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"bridge: {problem}", err=True)
        sys.exit(1)
    if url.startswith("sqlite") and not Path(state_dir).is_dir():
        click.echo(f"bridge: no state directory {state_dir} (give --state-dir or BRIDGE_STATE_DIR)",
                   err=True)
        sys.exit(1)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).is_file():
            # Opening it would create an empty file: say where we looked instead.
            click.echo(f"bridge: no database {database}: nothing was stored in {state_dir} yet "
                       "(give --state-dir or BRIDGE_STATE_DIR)", err=True)
            sys.exit(1)
    try:
        return Store.open(url, create=False)
    except StoreUnavailable as exc:
        click.echo(f"bridge: {exc}", err=True)
        sys.exit(1)


def resolve_delivery_id(store, prefix: str, *, lead: str = "", where: str = "") -> str:
    """The one stored delivery id that is `prefix` or starts with it, or exit 1 naming the
    candidates (`deliveries show`, `replay`, `explain --delivery`). `lead` starts each message
    and `where` ends the one for no match (explain's "error: " and " in the store (DIR)")."""
    found = store.delivery_ids(prefix)
    if len(found) == 1:
        return found[0]
    if not found:
        click.echo(f"{lead}no delivery '{prefix}'{where}", err=True)
        sys.exit(1)
    more = " ..." if len(found) > 10 else ""
    click.echo(f"{lead}'{prefix}' is ambiguous: it starts {'more than 10' if more else len(found)} "
               f"delivery ids: {', '.join(found[:10])}{more}; give more of the id", err=True)
    sys.exit(1)


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


def _log_env(name):
    """A click callback putting a log option into the environment, where bridge.logs and every
    child process (`cibridge serve` starts `cibridge web` and `cibridge dispatch`) read it."""
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
