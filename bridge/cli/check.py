"""`cibridge check` and `cibridge schema`: rules.yaml validated (optionally asking each target
online), and its JSON Schema printed.

Input: a rules file (or BRIDGE_RULES). Output: an OK line and exit 0, or every problem and exit 1;
the schema as JSON on stdout.
"""
from __future__ import annotations

import json
import os
import sys

import click

from bridge.cli.common import DEFAULT_RULES, load_rules_or_exit
from bridge.config.schema import rules_schema
from bridge.errors import TargetError


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--online", is_flag=True, help="also ask each target whether the jobs/projects exist")
@click.option("--no-secrets", is_flag=True,
              help="do not read secrets (for a rules repository's CI, which holds none): references "
                   "are checked for syntax only and a missing secret is no problem")
def check(file, online, no_secrets):
    """Validate rules.yaml (every problem at once, with its line). Exit 0 if valid, 1 if not."""
    path = file or os.environ.get("BRIDGE_RULES") or DEFAULT_RULES
    if online and no_secrets:
        raise click.UsageError("--online needs the targets' secrets: it cannot go with --no-secrets")
    config = load_rules_or_exit(path, resolve_secrets=not no_secrets)
    click.echo(f"{path}: OK ({len(config.sources)} sources, {len(config.targets)} targets, "
               f"{len(config.rules)} rules; version {config.version})")
    if no_secrets:
        click.echo("secrets not read (--no-secrets): references checked for syntax only; "
                   "a secret that is missing on the host still stops the start there")
    if online:
        _report_online(config)


def _report_online(config):
    """The online problems on stdout after the OK line, in order (one stream: a pipe or a log
    keeps them together), then a summary; exit 1 if there is any."""
    problems = online_problems(config)
    for p in problems:
        click.echo(p)
    if problems:
        click.echo(f"online check: {len(problems)} problem(s)")
        sys.exit(1)
    click.echo("online check: every target answered and every job/project is there")


def online_problems(config) -> list[str]:
    problems = []
    targets = config.build_targets()
    rules_file = os.path.basename(config.path)
    for name, target in targets.items():
        runs = [(r.name, r.line, r.run) for r in config.rules if r.target == name]
        if not runs:
            continue
        try:
            problems.extend(target.check_online(runs, rules_file=rules_file))
        except TargetError as exc:
            problems.append(f"target '{name}': {exc}")
        finally:
            target.close()
    return problems



@click.command()
def schema():
    """Print the JSON Schema of rules.yaml (editor completion; `cibridge check` stays the judge).

    Save it beside the rules (`cibridge schema > rules.schema.json`) and point the file at it with
    a first line `# yaml-language-server: $schema=rules.schema.json`."""
    click.echo(json.dumps(rules_schema(), indent=2, ensure_ascii=False))
