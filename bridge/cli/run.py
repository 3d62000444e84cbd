"""`cibridge serve`, `web` and `dispatch`: the commands that run the service's processes.

Input: command-line arguments, rules.yaml and the state directory. Output: running processes
(gunicorn web workers, a dispatcher, or both under the supervisor); exit 1 when they cannot start.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bridge.cli.common import (DEFAULT_BIND, default_state_dir, load_accepted_or_exit, log_options,
                               open_store, rules_option, state_option)
from bridge.logs import setup
from bridge.service.dispatcher import run_dispatcher
from bridge.service.listener import BindError, Listener
from bridge.service.supervisor import Supervisor
from bridge.service.web import run_web


def _state(state_dir):
    return state_dir or default_state_dir()


@click.command()
@rules_option
@state_option
@click.option("--bind", envvar="BRIDGE_BIND", default=DEFAULT_BIND, show_default=True,
              help="HOST:PORT (or unix:PATH) for the web workers (env BRIDGE_BIND); "
                   "port 0 takes a free one, printed at start")
@click.option("--workers", type=int, default=None, help="gunicorn workers (default settings.workers)")
@click.option("--no-dispatcher", is_flag=True, help="web workers only (same as `cibridge web`)")
@log_options
def serve(rules_path, state_dir, bind, workers, no_dispatcher):
    """Run the web workers (gunicorn) and the dispatcher together.

    Binds the port itself first (a busy port: exit 1 at once) and keeps it open while the web
    workers restart; ready (READY=1, the `listening on` line) once they answer /healthz on it."""
    setup()
    state_dir = _state(state_dir)
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    # Supervisor.run validates rules.yaml: a start on the last good rules if it is invalid.
    sys.exit(Supervisor(rules_path, state_dir, bind, workers=workers,
                        with_dispatcher=not no_dispatcher).run())


@click.command()
@rules_option
@state_option
@click.option("--bind", envvar="BRIDGE_BIND", default=DEFAULT_BIND, show_default=True,
              help="HOST:PORT or unix:PATH to listen on (env BRIDGE_BIND), or fd://N: a listening "
                   "socket inherited as file descriptor N (how `cibridge serve` hands over its port)")
@click.option("--workers", type=int, default=None,
              help="gunicorn worker processes (default settings.workers, else the gunicorn config's, else 2)")
@click.option("--threads", type=int, default=None, help="threads per worker (default the gunicorn config's)")
@click.option("--gunicorn-config", envvar="BRIDGE_GUNICORN_CONFIG",
              type=click.Path(dir_okay=False, exists=True), default=None,
              help="a gunicorn config file (deploy/gunicorn.conf.py)")
@log_options
def web(rules_path, state_dir, bind, workers, threads, gunicorn_config):
    """Run only the web workers (gunicorn): for hosts that split web and dispatcher.

    Starts on the rules last accepted (a reload, a start of `cibridge serve`), not on an edit of
    rules.yaml nobody reloaded: send SIGHUP (`systemctl reload`) to load the file."""
    setup()
    state_dir = _state(state_dir)
    if not bind.startswith("fd://"):
        # Bound here, before the rules are even read: a busy port is one line and exit 1 at
        # once (gunicorn would retry for 5 s, then exit with a traceback-like log).
        try:
            bind = Listener(bind).detach()
        except BindError as exc:
            click.echo(f"bridge: {exc}; nothing started", err=True)
            sys.exit(1)
    config = load_accepted_or_exit(rules_path, state_dir)
    open_store(config, state_dir).close()
    run_web(rules_path, state_dir, bind, workers=workers, threads=threads, config_file=gunicorn_config,
            config=config)


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
    state_dir = _state(state_dir)
    config = load_accepted_or_exit(rules_path, state_dir)
    run_dispatcher(rules_path, state_dir, concurrency=concurrency, config=config)
