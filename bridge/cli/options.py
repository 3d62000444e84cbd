"""The `--log-level` and `--log-format` options of the `cibridge` group and of the commands that run
the service: light (click and bridge.logs only), so that `cibridge --help` imports nothing else.

Input: the flags or BRIDGE_LOG_LEVEL / BRIDGE_LOG_FORMAT. Output: the value put into the environment.
"""
from __future__ import annotations

import os

import click

from bridge.logs import FORMAT_ENV, FORMATS, LEVEL_ENV, LEVELS


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
