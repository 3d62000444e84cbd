"""Benchmark of bridge.dispatch.changes: changed files for a 5,000-commit push (GitLab shape: 20 commits
in the payload) with a warm mirror (goal under 1 s), and the cold first fetch of a ~50 MB
repository of incompressible blobs over file://.

Input: nothing (builds its repositories with `git fast-import` in a temporary directory).
Output: the figures, printed. Run: .venv/bin/python bench/changes_bench.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.dispatch.changes import resolve_changed_files  # noqa: E402
from bridge.dispatch.mirror import Mirrors  # noqa: E402
from bridge.providers.clone import CONFIG_SCHEMES  # noqa: E402
from bridge.events import ZERO_SHA, Commit, Event  # noqa: E402

ISOLATED = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
ENV = {**os.environ, **ISOLATED}
COMMITTER = "committer Bench <bench@example.com> {t} +0000"


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=ENV, input=input, capture_output=True,
                          check=True).stdout.decode().strip()


def fast_import(repo: Path, commits: list[tuple[str, list[tuple[str, bytes]]]], parent: str | None,
                ref: str = "refs/heads/main") -> list[str]:
    """Append `commits` ([(message, [(path, content)])]) to `ref`; return their shas."""
    out = bytearray()
    for i, (message, files) in enumerate(commits, start=1):
        out += f"commit {ref}\nmark :{i}\n{COMMITTER.format(t=1_700_000_000 + i)}\n".encode()
        out += f"data {len(message)}\n{message}\n".encode()
        if i == 1 and parent:
            out += f"from {parent}\n".encode()
        for path, content in files:
            out += f"M 644 inline {path}\ndata {len(content)}\n".encode() + content + b"\n"
    marks = repo / "bench-marks"
    git(repo, "fast-import", "--quiet", f"--export-marks={marks}", input=bytes(out))
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    marks.unlink()
    return [by_mark[f":{i}"] for i in range(1, len(commits) + 1)]


def event(url: str, before: str, after: str, *, ref: str = "refs/heads/main", commits=(),
          complete: bool = False) -> Event:
    return Event(provider="gitlab", source="gitlab", delivery_id="bench", kind="push",
                 repo="bench/repo", ref=ref, ref_name=ref.split("/", 2)[2], before=before,
                 after=after, sha=after, created=before == ZERO_SHA, commits=tuple(commits),
                 commits_complete=complete, default_branch="main", clone_urls=(url,))


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def big_push(tmp: Path) -> None:
    repo = tmp / "big"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(repo))
    url = f"file://{repo}"
    # A base tree of 2,000 files in 200 packages, then 5,000 commits each rewriting one file.
    [base] = fast_import(repo, [("base", [(f"src/pkg{k % 200}/file{k}.py", f"# {k}\n".encode())
                                         for k in range(2000)])], None)
    # Warm the mirrors the way the dispatcher does: it resolved the pushes before this one. One
    # saw only branch pushes (a shallow mirror), one also a new branch (full history).
    [warm] = fast_import(repo, [("warm", [("README.md", b"hello\n")])], base)
    mirrors = Mirrors(tmp / "mirrors-big", env=ISOLATED, payload_schemes=CONFIG_SCHEMES)
    assert mirrors.changed_files(event(url, base, warm)).files == {"README.md"}
    git(repo, "branch", "topic", warm)
    full = Mirrors(tmp / "mirrors-full", env=ISOLATED, payload_schemes=CONFIG_SCHEMES)
    assert full.changed_files(event(url, ZERO_SHA, warm, ref="refs/heads/topic")).source == "mirror"
    history = [(f"commit {i}", [(f"src/pkg{i % 200}/file{(i * 7) % 2000}.py", f"v{i}\n".encode())])
               for i in range(5000)]
    shas, took = timed(lambda: fast_import(repo, history, warm))
    print(f"built 5,000 commits with git fast-import in {took:.2f}s")
    payload = [Commit(id=sha, modified=(history[i][1][0][0],))
               for i, sha in enumerate(shas[-20:], start=4980)]
    push = event(url, warm, shas[-1], commits=payload, complete=False)
    expected = {path for _, files in history for path, _ in files}

    got, first = timed(lambda: resolve_changed_files(push, mirrors))
    assert got.source == "mirror" and got.files == expected, got
    _, again = timed(lambda: resolve_changed_files(push, mirrors))
    print(f"5,000-commit push, 20 in the payload, warm shallow mirror: {first:.3f}s "
          f"(fetch + diff, {len(got.files)} files); asked again (diff only): {again:.3f}s")

    got, took = timed(lambda: resolve_changed_files(push, full))
    assert got.files == expected
    print(f"5,000-commit push, warm full-history mirror (fetches 5,000 commits): {took:.3f}s")


def cold_fetch(tmp: Path) -> None:
    repo = tmp / "fat"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(repo))
    url = f"file://{repo}"
    blobs = [(f"assets/blob{i:02}.bin", os.urandom(2**20)) for i in range(50)]
    [first, second] = fast_import(repo, [("most assets", blobs[:48]), ("two more", blobs[48:])], None)
    # fast-import leaves so few objects loose; a host serves from packs (else upload-pack would
    # spend ~10 s compressing and delta-searching 50 MiB of noise on every clone).
    git(repo, "repack", "-adq")
    size = du(repo)

    got, took = timed(lambda: Mirrors(tmp / "mirrors-cold", env=ISOLATED, payload_schemes=CONFIG_SCHEMES).changed_files(
        event(url, first, second)))
    assert got.files == {path for path, _ in blobs[48:]}, got
    print(f"cold fetch of a {size / 2**20:.1f} MiB repository over file:// "
          f"(existing branch, --depth=1): {took:.2f}s")
    git(repo, "branch", "topic", second)
    got, took = timed(lambda: Mirrors(tmp / "mirrors-cold-full", env=ISOLATED, payload_schemes=CONFIG_SCHEMES).changed_files(
        event(url, ZERO_SHA, second, ref="refs/heads/topic")))
    assert got.source == "mirror", got
    print(f"cold fetch of the same repository, full history (new branch): {took:.2f}s")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="changes-bench-") as tmp:
        big_push(Path(tmp))
        cold_fetch(Path(tmp))


if __name__ == "__main__":
    main()
