"""The `cibridge` command line (click, as Flask uses): check, explain, serve, dispatch and the operator commands.

Input: arguments and the BRIDGE_* environment. Output: exit status 0 on success, 1 on a
reported problem, 2 on a usage error; human text by default, JSON where `--format json` says so.
Each command lives in its own module, imported only when it runs (lazy.py): `--version` and
`--help` stay fast.
"""
from __future__ import annotations

import click

from bridge import __version__
from bridge.cli.lazy import LazyGroup
from bridge.cli.options import log_options

#: name -> (module, attribute, the first paragraph of its help, which `cibridge --help` shows;
#: tests/integration/cli/test_lazy_cli.py holds it to the command's own docstring).
COMMANDS = {
    "check": ("bridge.cli.check", "check",
              "Validate rules.yaml (every problem at once, with its line). Exit 0 if valid, 1 if not."),
    "db": ("bridge.cli.db", "db",
           "The store's schema: `status` shows its version, `upgrade` applies the migrations."),
    "deliveries": ("bridge.cli.deliveries", "deliveries",
                   "List recent deliveries: id, time, repo, ref, rules matched, job states."),
    "dispatch": ("bridge.cli.dispatch_cmd", "dispatch",
                 "Run a dispatcher alone: claims queued jobs and starts them on their targets."),
    "explain": ("bridge.cli.explain", "explain",
                "Run normalize -> match offline on a payload and say, for every rule, why it "
                "matches or not."),
    "mirrors": ("bridge.cli.mirrors", "mirrors", "Git mirrors that compute changed files for path filters."),
    "prune": ("bridge.cli.prune", "prune",
              "Delete finished deliveries (and their jobs) and refusal records older than the given age."),
    "reconcile": ("bridge.cli.reconcile", "reconcile",
                  "Recover missed deliveries: failed ones in the hosts' delivery logs are redelivered, "
                  "and watched branches and tags ahead of the deliveries get a synthesized push "
                  "(`via: reconcile`)."),
    "replay": ("bridge.cli.replay", "replay",
               "Queue a stored delivery's builds again: re-matched against the CURRENT rules "
               "(rules.yaml must be valid; no secret is read), or with --no-rematch its stored "
               "jobs as they were."),
    "retry": ("bridge.cli.retry", "retry",
              "Queue dead or failed jobs again: the given JOB_IDS, or every job the filters find "
              "(`--state failed --since 1h --target local`), after showing them and asking."),
    "schema": ("bridge.cli.check", "schema",
               "Print the JSON Schema of rules.yaml (editor completion; `cibridge check` stays the judge)."),
    "send": ("bridge.cli.send", "send",
             "Sign a payload with the source's first secret and POST it, as its git host would "
             "(GitLab: a whsec_ signing token signs in Standard Webhooks form, a plain token is "
             "sent as it is)."),
    "serve": ("bridge.cli.run", "serve", "Run the web workers (gunicorn) and the dispatcher together."),
    "web": ("bridge.cli.web_cmd", "web",
            "Run only the web workers (gunicorn): for hosts that split web and dispatcher."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="cibridge")
@log_options
def cli():
    """bridge: webhook bridge from git pushes to CI builds."""


def main():
    cli(prog_name="cibridge")
