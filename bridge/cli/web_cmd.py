"""`cibridge web`: gunicorn web workers alone (a child of `cibridge serve`, or split from the dispatcher).

Input: command-line arguments, the rules last accepted and the state directory. Output: running
web workers; exit 1 when they cannot start. Imports nothing of the dispatcher's.
"""
from __future__ import annotations

import sys

import click

from bridge.cli.common import DEFAULT_BIND, default_state_dir, load_accepted_or_exit, rules_option, state_option
from bridge.cli.options import log_options
from bridge.cli.stores import open_store
from bridge.logs import setup
from bridge.service.handover import received_at_start
from bridge.service.listener import BindError, Listener
from bridge.service.web import run_web


@click.command()
@rules_option
@state_option
@click.option("--bind", envvar="BRIDGE_BIND", default=DEFAULT_BIND, show_default=True,
              help="HOST:PORT or unix:PATH to listen on (env BRIDGE_BIND), or fd://N: a listening "
                   "socket inherited as file descriptor N (how `cibridge serve` hands over its port)")
@click.option("--workers", type=int, default=None,
              help="gunicorn worker processes (default settings.workers, else the gunicorn config's, else 2)")
@click.option("--threads", type=int, default=None, help="threads per worker (default the gunicorn config's, else 16)")
@click.option("--gunicorn-config", envvar="BRIDGE_GUNICORN_CONFIG",
              type=click.Path(dir_okay=False, exists=True), default=None,
              help="a gunicorn config file (deploy/gunicorn.conf.py)")
@log_options
def web(rules_path, state_dir, bind, workers, threads, gunicorn_config):
    """Run only the web workers (gunicorn): for hosts that split web and dispatcher.

    Starts on the rules last accepted (a reload, a start of `cibridge serve`), not on an edit of
    rules.yaml nobody reloaded: send SIGHUP (`systemctl reload`) to load the file."""
    setup()
    state_dir = state_dir or default_state_dir()
    if not bind.startswith("fd://"):
        # Bound here, before the rules are even read: a busy port is one line and exit 1 at
        # once (gunicorn would retry for 5 s, then exit with a traceback-like log).
        try:
            bind = Listener(bind).detach()
        except BindError as exc:
            click.echo(f"bridge: {exc}; nothing started", err=True)
            sys.exit(1)
    # Under `cibridge serve`: the rules it validated (handover.py); else validated here.
    config = received_at_start(rules_path, state_dir) or load_accepted_or_exit(rules_path, state_dir)
    open_store(config, state_dir).close()
    run_web(rules_path, state_dir, bind, workers=workers, threads=threads, config_file=gunicorn_config,
            config=config)
