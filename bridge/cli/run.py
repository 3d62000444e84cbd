"""`cibridge serve`: the supervisor, which starts `cibridge web` and `cibridge dispatch` as its children
(web_cmd.py, dispatch_cmd.py: each process imports only what its role uses).

Input: command-line arguments, rules.yaml and the state directory. Output: the running service;
exit 1 when it cannot start.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bridge.cli.common import DEFAULT_BIND, default_state_dir, rules_option, state_option
from bridge.cli.options import log_options
from bridge.logs import setup
from bridge.service.supervisor import Supervisor


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
