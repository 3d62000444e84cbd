"""Mirror eviction and `cibridge mirrors`: prune by age then size, the CLI listing and pruning, the
duration and size settings, and the clone token sent only to the configured clone URL."""
from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner

from bridge.cli.mirrors import mirrors as mirrors_cli
from bridge.dispatch.mirror import Mirrors, mirror_key
from bridge.policies import parse_duration, parse_size
from helpers.git import ISOLATED, push
from helpers.mirrors import make_upstream, mirrors  # noqa: F401  (fixtures)


# --- eviction and the CLI ------------------------------------------------------------------------------

def test_prune_evicts_by_age_then_by_size(make_upstream, tmp_path):
    clock = [1_000_000.0]
    mirrors = Mirrors(tmp_path / "mirrors", env=ISOLATED, now=lambda: clock[0], max_age=1e9,
                      max_bytes=2**40)
    urls = []
    for i in range(3):
        up = make_upstream()
        before = up.commit({"a": "1"})
        after = up.commit({f"big{i}": os.urandom(50_000).hex()})
        assert mirrors.changed_files(push(up.url, before, after), url=up.url).files == {f"big{i}"}
        urls.append(up.url)
        clock[0] += 3600
    sizes = {m["url"]: m["size"] for m in mirrors.list()}
    assert [m["url"] for m in mirrors.list()] == urls[::-1]      # most recently used first

    # Unused for more than 2.5 hours: only the first.
    assert mirrors.prune(max_age=2.5 * 3600, max_bytes=2**40) == [urls[0]]
    # Over the size cap: the least recently used goes first.
    assert mirrors.prune(max_age=1e9, max_bytes=sizes[urls[2]] + 1) == [urls[1]]
    assert [m["url"] for m in mirrors.list()] == [urls[2]]
    assert sorted(p.name for p in (tmp_path / "mirrors").iterdir()) == sorted(
        [mirror_key(urls[2]), f"{mirror_key(urls[2])}.lock"])


def test_mirrors_cli_lists_and_prunes(make_upstream, tmp_path, monkeypatch):
    up = make_upstream()
    before, after = up.commit({"a": "1"}), up.commit({"b": "1"})
    state = tmp_path / "state"
    Mirrors(state / "mirrors", env=ISOLATED, now=lambda: time.time() - 3 * 86400).changed_files(
        push(up.url, before, after), url=up.url)
    runner = CliRunner()
    monkeypatch.setenv("BRIDGE_STATE_DIR", str(state))

    listed = runner.invoke(mirrors_cli, ["list"])
    assert listed.exit_code == 0 and up.url in listed.output and mirror_key(up.url) in listed.output

    kept = runner.invoke(mirrors_cli, ["prune", "--max-age", "4d"])
    assert kept.exit_code == 0 and kept.output == "0 mirror(s) evicted\n"
    bad = runner.invoke(mirrors_cli, ["prune", "--max-size", "lots"])
    assert bad.exit_code == 2 and "not a size: 'lots'" in bad.output
    pruned = runner.invoke(mirrors_cli, ["prune", "--state-dir", str(state), "--max-age", "2d"])
    assert pruned.exit_code == 0 and pruned.output == f"evicted {up.url}\n1 mirror(s) evicted\n"
    assert runner.invoke(mirrors_cli, ["list"]).output == f"no mirrors in {state / 'mirrors'}\n"


def test_duration_and_size_parsing():
    assert [parse_duration(t) for t in ("30d", "12h", "90m", "45s", "10", "2w")] == [
        30 * 86400, 12 * 3600, 5400, 45, 10, 14 * 86400]
    assert [parse_size(t) for t in ("5G", "500M", "1.5GiB", "100K", "7", "2gb")] == [
        5 * 2**30, 500 * 2**20, int(1.5 * 2**30), 100 * 2**10, 7, 2 * 2**30]
    for parse, bad in [(parse_duration, ""), (parse_duration, "-1d"), (parse_duration, "d"),
                       (parse_duration, "5y"), (parse_size, "5X"), (parse_size, "G")]:
        with pytest.raises(ValueError):
            parse(bad)


def test_clone_token_goes_only_to_the_configured_clone_url():
    from types import SimpleNamespace

    from bridge.dispatch.changes import source_clone_url
    event = SimpleNamespace(clone_urls=("https://attacker.example/x.git",))
    with_url = SimpleNamespace(provider="gitlab", options={"clone_url": "https://gitlab.example.com/g/p.git",
                                                            "clone_token": "glpat-secret"})
    assert source_clone_url(with_url, event) == "https://oauth2:glpat-secret@gitlab.example.com/g/p.git"
    without_url = SimpleNamespace(provider="gitlab", options={"clone_token": "glpat-secret"})
    assert source_clone_url(without_url, event) is None   # the event's own URL, no token
