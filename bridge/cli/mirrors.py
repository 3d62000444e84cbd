"""`cibridge mirrors list|prune`: the operator's view of the git mirrors used for path filters.

Input: the state directory (mirrors live in <state_dir>/mirrors) and, for the default limits,
rules.yaml's `settings.mirrors`. Output: a table of mirrors, or the mirrors evicted; every URL
with its credentials redacted.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from bridge.cli.common import absolute_state_dir, default_state_dir, parsed_option
from bridge.config.load import load_config
from bridge.dispatch.mirror import Mirrors
from bridge.errors import ConfigError
from bridge.policies import parse_duration, parse_size

__all__ = ["mirrors", "default_state_dir"]



def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=default_state_dir,
    callback=lambda ctx, param, value: Path(absolute_state_dir(value)),
    show_default="$BRIDGE_STATE_DIR, $STATE_DIRECTORY or ./var",
    help="The bridge's state directory.")


@click.group("mirrors")
def mirrors() -> None:
    """Git mirrors that compute changed files for path filters."""


@mirrors.command("list")
@state_dir_option
def list_mirrors(state_dir: Path) -> None:
    """Show every mirror: last use, size, repository URL, directory."""
    found = Mirrors(state_dir / "mirrors").list()
    if not found:
        click.echo(f"no mirrors in {state_dir / 'mirrors'}")
        return
    for m in found:
        used = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["last_used"]))
        click.echo(f"{used}  {_human(m['size']):>10}  {m['url']}  {m['path']}")


@mirrors.command("prune")
@state_dir_option
@click.option("--rules", "rules_path", envvar="BRIDGE_RULES", default=None,
              type=click.Path(dir_okay=False),
              help="Take the default limits from this rules.yaml's settings.mirrors (env BRIDGE_RULES).")
@click.option("--max-age", default=None, callback=parsed_option(parse_duration),
              help="Evict mirrors unused for longer than this (30d, 12h, 90m). "
                   "Default: settings.mirrors.max_age, else 30d.")
@click.option("--max-size", default=None, callback=parsed_option(parse_size),
              help="Then evict the least recently used until all mirrors fit (5G, 500M). "
                   "Default: settings.mirrors.max_size, else 5G.")
def prune_mirrors(state_dir: Path, rules_path: str | None, max_age: float | None,
                  max_size: int | None) -> None:
    """Evict idle mirrors, then the least recently used beyond the size cap.

    Reads no secret from rules.yaml: only its settings.mirrors, and not at all when both
    --max-age and --max-size are given."""
    settings = None
    if rules_path and (max_age is None or max_size is None):
        try:
            settings = load_config(rules_path, resolve_secrets=False).settings
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            click.echo(f"{rules_path}: {len(exc.problems)} problem(s); nothing pruned "
                       "(give both --max-age and --max-size to prune without it)", err=True)
            sys.exit(1)
    evicted = Mirrors.for_settings(state_dir, settings).prune(max_bytes=max_size, max_age=max_age)
    for url in evicted:
        click.echo(f"evicted {url}")
    click.echo(f"{len(evicted)} mirror(s) evicted")
