"""Opening the store for the `cibridge` commands: the service's (from the rules) and the operator
commands' (the database the service last used, reading no secret but the database URL's own).

Input: a Config or the rules path and state directory. Output: a Store, or exit 1 with one line
saying why; a stored delivery's full id from any unique beginning of it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from bridge.cli.common import default_state_dir
from bridge.config import secrets as secret_refs
from bridge.config.load import load_config, read_rules_text
from bridge.config.snapshot import LAST_GOOD
from bridge.config.yamlload import load
from bridge.errors import BridgeError, ConfigError, SecretError, StoreUnavailable
from bridge.store import Store, open_for


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
