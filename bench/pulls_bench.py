"""Benchmark of pull requests: the ack of a signed `pull_request` delivery to a real `cibridge serve`
beside a push's and the bare-Flask floor's (closed loop, every acknowledged one built on the
memory target), and a pull request's changed files (the three-dot diff) on a 5,000-commit branch
in a cold and a warm mirror.

Input: flags (duration, connection counts). Output: the figures, printed side by side. Run:
.venv/bin/python bench/pulls_bench.py [--duration 5] [--connections 1,64]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402  (bench/load.py: the bridge, the floor and the load generator)
from changes_bench import ISOLATED, fast_import, git, timed  # noqa: E402

from bridge.dispatch.changes import resolve_changed_files  # noqa: E402
from bridge.dispatch.mirror import Mirrors  # noqa: E402
from bridge.events import Event  # noqa: E402
from bridge.providers.clone import CONFIG_SCHEMES  # noqa: E402

PULL = load.PAYLOAD.parent / "pull_request__octokit-opened.json"
RULES = """\
settings:
  durability: {durability}
  dispatcher_concurrency: {concurrency}
sources:
  github: {{provider: github, secrets: ["${{env:BENCH_SECRET}}"]}}
targets:
  mem: {{kind: memory}}
rules:
  - name: bench
    on: {{repo: f110/test, branches: ["**"]}}
    run: {run}
  - name: bench-pr
    on: {{repo: Codertocat/Hello-World, pull_request: {{branches: [master]}}}}
    run: {{target: mem, parameters: {{PR: "${{number}}", SHA: "${{head_sha}}", REF: "${{ref}}"}}}}
"""
_NUMBER, _HEAD = 987654321, "e" * 40


class PullDeliveries(load.Deliveries):
    """Fresh signed `pull_request` deliveries: a new delivery id, pull request number and head
    (each its own pull request, so no job supersedes another and every one is built)."""

    def __init__(self, port: int):
        doc = json.loads(PULL.read_bytes())
        doc["number"] = doc["pull_request"]["number"] = _NUMBER
        doc["pull_request"]["head"]["sha"] = _HEAD
        self.template = json.dumps(doc).encode()
        self.host = f"127.0.0.1:{port}".encode()

    def next(self) -> tuple[str, bytes]:
        delivery = str(uuid.uuid4())
        number = str(int.from_bytes(os.urandom(4), "big") % 900_000_000 + 1).encode()
        body = (self.template.replace(str(_NUMBER).encode(), number)
                .replace(_HEAD.encode(), os.urandom(20).hex().encode()))
        digest = hmac.new(load.SECRET, body, hashlib.sha256).hexdigest()
        head = (b"POST /hooks/github HTTP/1.1\r\nHost: " + self.host
                + b"\r\nContent-Type: application/json\r\nUser-Agent: GitHub-Hookshot/bench"
                + b"\r\nX-GitHub-Event: pull_request\r\nX-GitHub-Delivery: " + delivery.encode()
                + b"\r\nX-Hub-Signature-256: sha256=" + digest.encode()
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        return delivery, head + body


def acks(workdir: Path, args) -> None:
    port = load.free_port()
    script = workdir / "floor_app.py"
    script.write_text(load.FLOOR_APP.format(root=str(load.ROOT)), encoding="utf-8")
    floor = load.Server([sys.executable, str(script), f"127.0.0.1:{port}", "-", "-"], port,
                        workdir / "floor.log")
    rows = {}
    try:
        for n in args.connections:
            r = load.run_load(port, connections=n, duration=args.duration, label=f"floor {n} conns")
            rows[n] = [r]
    finally:
        floor.stop()
    bridge = load.Bridge(workdir, durability="normal", run=load.MEMORY_RUN, args=args, rules=RULES)
    try:
        for n in args.connections:
            for label, maker in (("push", None), ("pull_request", PullDeliveries)):
                r = load.run_load(bridge.port, connections=n, duration=args.duration, deliveries=maker,
                                  label=f"{label} {n} conns")
                load.report_built(bridge, r)
                rows[n].append(r)
    finally:
        bridge.stop()
    print(f"\n{'ack, closed loop, durability normal':40} {'bare Flask floor':>28} {'push':>28} "
          f"{'pull_request':>28}")
    for n, (f, push, pull) in rows.items():
        cells = [f"{r.rate():6.0f}/s p50 {r.pct(0.5):5.1f} p99 {r.pct(0.99):5.1f} ms" for r in (f, push, pull)]
        print(f"{f'{n} connections':40} " + " ".join(f"{c:>28}" for c in cells), flush=True)


def changed_files(tmp: Path) -> None:
    """A pull request of 5,000 commits on a 2,000-file tree; the base moves on after the branch point."""
    repo = tmp / "host"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(repo))
    url = f"file://{repo}"
    [base] = fast_import(repo, [("base", [(f"src/pkg{k % 200}/file{k}.py", f"# {k}\n".encode())
                                         for k in range(2000)])], None)
    history = [(f"commit {i}", [(f"src/pkg{i % 200}/file{(i * 7) % 2000}.py", f"v{i}\n".encode())])
               for i in range(5000)]
    head = fast_import(repo, history, base, ref="refs/pull/1/head")[-1]
    fast_import(repo, [("base moves", [("docs/after.md", b"later\n")])], base)
    expected = {path for _, files in history for path, _ in files}

    def pull(sha: str) -> Event:
        return Event(provider="github", source="github", delivery_id="bench", kind="pull_request",
                     repo="bench/repo", ref="refs/pull/1/head", ref_name="pull/1/head", before="",
                     after=sha, sha=sha, commits_complete=False, default_branch="main",
                     clone_urls=(url,), number=1, action="synchronize", base_ref="main",
                     head_ref="topic", head_sha=sha)

    mirrors = Mirrors(tmp / "mirrors", env=ISOLATED, payload_schemes=CONFIG_SCHEMES)
    got, cold = timed(lambda: resolve_changed_files(pull(head), mirrors))
    assert got.source == "mirror" and got.files == expected, got
    [newer] = fast_import(repo, [("one more", [("src/new.py", b"new\n")])], head, ref="refs/pull/1/head")
    got, warm = timed(lambda: resolve_changed_files(pull(newer), mirrors))
    assert got.files == expected | {"src/new.py"}, got
    print(f"\npull request of 5,000 commits ({len(got.files)} files changed, base moved on after the "
          f"branch point): cold mirror {cold:.3f}s (fetch + merge-base + diff), warm mirror after one "
          f"more commit {warm:.3f}s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per load run (default 5)")
    p.add_argument("--connections", default="1,64", help="closed-loop connection counts")
    p.add_argument("--parts", default="acks,files", help="acks and/or files")
    args = p.parse_args(argv)
    args.connections = [int(x) for x in args.connections.split(",") if x]
    args.workers = args.threads = None
    args.concurrency = 4
    workdir = Path(tempfile.mkdtemp(prefix="bridge-pulls-bench-"))
    try:
        if "acks" in args.parts:
            acks(workdir, args)
        if "files" in args.parts:
            changed_files(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
