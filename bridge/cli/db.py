"""`cibridge db status` and `cibridge db upgrade`: the store's schema version, and the migrations.

Input: rules.yaml (for `settings.database_url`), BRIDGE_DATABASE_URL, or --database-url. Output:
the schema's state on stdout; exit 0 when the schema is (now) current, 1 otherwise.
"""
from __future__ import annotations

import sys
import time

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.cli.common import default_state_dir, load_or_exit, rules_option, state_option
from bridge.errors import StoreUnavailable
from bridge.store import Store


def _database_option(f):
    return click.option("--database-url", default=None,
                        help="the database to act on, instead of the one rules.yaml and "
                             "BRIDGE_DATABASE_URL name")(f)


@click.group()
def db():
    """The store's schema: `status` shows its version, `upgrade` applies the migrations.

    The embedded SQLite store creates and upgrades itself when `cibridge serve` starts. On
    PostgreSQL, shared by several instances, `cibridge serve` only creates an empty database:
    upgrades are `cibridge db upgrade`, run once, at the moment you choose.
    """


@db.command()
@rules_option
@state_option
@_database_option
def status(rules_path, state_dir, database_url):
    """Show the schema version of the database and of this bridge; exit 1 unless current."""
    url, durability = _target(rules_path, state_dir, database_url)
    st = _run(lambda store: store.schema_status(), url, durability)
    click.echo(f"database: {_safe(url)}")
    click.echo(f"schema version: {'none' if st.version is None else st.version} "
               f"(this bridge: {st.code_version})")
    for version, applied_at in st.applied:
        click.echo(f"  {version}  applied {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(applied_at))}")
    for step in st.pending:
        click.echo(f"  {step.version}  pending: {step.description}")
    for problem in st.drift:
        click.echo(f"  drift: {problem}")
    if st.version is None:
        click.echo("no bridge schema here: `cibridge db upgrade` creates it")
    elif st.version > st.code_version:
        click.echo("the database is newer than this bridge: run the newer release")
    elif st.pending:
        click.echo("run `cibridge db upgrade`")
    elif st.drift:
        click.echo("the tables differ from what this version expects (changed by hand?)")
    sys.exit(0 if st.current else 1)


@db.command()
@rules_option
@state_option
@_database_option
def upgrade(rules_path, state_dir, database_url):
    """Create the schema, or bring it to this bridge's version, in one transaction.

    Safe to run while instances serve (a step waits at most 10 s for a table lock, else it fails
    and changes nothing) and from several hosts at once (an advisory lock serializes them).
    Instances of the older release keep running, but refuse to start again once it is done.
    """
    url, durability = _target(rules_path, state_dir, database_url)
    before = _run(lambda store: store.schema_status(), url, durability, create=True)
    after = _run(lambda store: store.schema_status(), url, durability, create=True, upgrade=True)
    if before.version == after.version:
        click.echo(f"schema version {after.version}: already current")
    else:
        start = "none" if before.version is None else before.version
        click.echo(f"schema version {start} -> {after.version}")
        for step in before.pending:
            click.echo(f"  {step.version}  {step.description}")


def _target(rules_path, state_dir, database_url) -> tuple[str, str]:
    if database_url:
        try:
            make_url(database_url)
        except ArgumentError:
            raise click.BadParameter("not a database URL", param_hint="--database-url") from None
        return database_url, "full"
    config = load_or_exit(rules_path)
    return config.database_url(state_dir or default_state_dir()), config.settings.durability


def _run(action, url, durability, *, create=False, upgrade=False):
    try:
        # create: may make the SQLite state directory; upgrade: check, create and upgrade.
        store = Store.open(url, durability=durability, create=create, upgrade=upgrade, check=upgrade)
        try:
            return action(store)
        finally:
            store.close()
    except (StoreUnavailable, ValueError) as exc:
        click.echo(f"{_safe(url)}: {exc}", err=True)
        sys.exit(1)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
