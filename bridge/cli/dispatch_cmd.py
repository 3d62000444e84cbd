"""`cibridge dispatch`: a dispatcher alone (a child of `cibridge serve`, or split from the web workers).

Input: command-line arguments, the rules last accepted and the state directory. Output: a running
dispatcher; exit 1 when it cannot start. Imports nothing of the web workers'.
"""
from __future__ import annotations

import click

from bridge.cli.common import default_state_dir, load_accepted_or_exit, rules_option, state_option
from bridge.cli.options import log_options
from bridge.logs import setup
from bridge.service.dispatcher import run_dispatcher
from bridge.service.handover import received_at_start


@click.command()
@rules_option
@state_option
@click.option("--concurrency", type=int, default=None, help="jobs at once (default settings)")
@log_options
def dispatch(rules_path, state_dir, concurrency):
    """Run a dispatcher alone: claims queued jobs and starts them on their targets.

    Starts on the rules last accepted (a reload, a start of `cibridge serve`), not on an edit of
    rules.yaml nobody reloaded: send SIGHUP (`systemctl reload`) to load the file."""
    setup()
    state_dir = state_dir or default_state_dir()
    # Under `cibridge serve`: the rules it validated (handover.py); else validated here.
    config = received_at_start(rules_path, state_dir) or load_accepted_or_exit(rules_path, state_dir)
    run_dispatcher(rules_path, state_dir, concurrency=concurrency, config=config)
