"""`cibridge prune`: finished deliveries (and their jobs) older than an age deleted from the store,
and the records of refused deliveries as old.

Input: an age (30d, 12h, ...) and the store in the state directory (no secret, no valid rules
file). Output: the counts deleted.
"""
from __future__ import annotations

import time

import click

from bridge.cli.common import rules_option, state_option
from bridge.cli.stores import open_operator_store
from bridge.errors import BridgeError
from bridge.policies import parse_duration


@click.command()
@rules_option
@state_option
@click.option("--older-than", default="30d", show_default=True,
              help="age of the deliveries to delete: 30d, 12h, ...")
def prune(rules_path, state_dir, older_than):
    """Delete finished deliveries (and their jobs) and refusal records older than the given age."""
    try:
        age = parse_duration(older_than)
    except BridgeError as exc:     # InvalidValue
        raise click.BadParameter(str(exc), param_hint="--older-than")
    store = open_operator_store(rules_path, state_dir)
    cutoff = time.time() - age
    n = store.prune(cutoff)
    r = store.prune_refusals(cutoff)
    click.echo(f"pruned {n} deliveries older than {older_than}"
               + (f" and {r} records of refused deliveries" if r else ""))
