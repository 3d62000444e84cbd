"""Mutation testing, stage 2: run each mutant of a module against its fast tests and report.

Input: module names from targets.py (all by default). Output, per module: killed / survived /
timed out, the score, and each surviving mutant (file:line, function, the change); exit status 1
if a module scores under --fail-under. Each mutant runs in a subprocess (pytest -x) against a
private copy of the `bridge` package, so the worktree is never modified.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from mutants import baseline, function_names, mutants  # noqa: E402
from targets import TARGETS  # noqa: E402

EQUIVALENTS = HERE / "equivalents.txt"


class TableError(SystemExit):
    pass


def check_table(names: list[str]) -> None:
    """Fail clearly when the table names something that is not there (a module moved)."""
    problems = []
    for name in names:
        if name not in TARGETS:
            problems.append(f"no module '{name}' in tests/mutation/targets.py (known: {', '.join(TARGETS)})")
            continue
        entry = TARGETS[name]
        path = ROOT / entry["path"]
        if not path.is_file():
            problems.append(f"{name}: path {entry['path']} does not exist (moved? update its row in "
                            f"tests/mutation/targets.py)")
            continue
        for test in entry["tests"]:
            if not (ROOT / test).is_file():
                problems.append(f"{name}: test file {test} does not exist (update tests/mutation/targets.py)")
        known = function_names(path.read_text(encoding="utf-8"))
        for func in entry.get("functions", ()):
            if func not in known:
                problems.append(f"{name}: function {func} is not in {entry['path']} (update "
                                f"tests/mutation/targets.py)")
    if problems:
        raise TableError("\n".join("mutate: " + p for p in problems))


def load_equivalents() -> dict[tuple[str, str], str]:
    """equivalents.txt: `module :: function :: change  # reason`, one accepted mutant a line."""
    out = {}
    if not EQUIVALENTS.exists():
        return out
    for number, line in enumerate(EQUIVALENTS.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        body, sep, reason = line.rpartition("  # ")
        parts = body.split(" :: ", 1) if sep else []
        if len(parts) != 2 or not reason.strip():
            raise TableError(f"mutate: {EQUIVALENTS.name}:{number}: expected "
                             f"'module :: function :: change  # reason', got {line!r}")
        out[(parts[0].strip(), parts[1].strip())] = reason.strip()
    return out


class Workspace:
    """A private copy of the package; one mutated file at a time."""

    def __init__(self, base: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="mutate-", dir=base))
        shutil.copytree(ROOT / "bridge", self.dir / "bridge",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    def run(self, rel_path: str, source: str, tests: list[str], timeout: float) -> tuple[str, float]:
        target = self.dir / rel_path
        original = target.read_text(encoding="utf-8")
        target.write_text(source, encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(self.dir), PYTHONSAFEPATH="1",
                   PYTHONDONTWRITEBYTECODE="1")
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-p", "no:randomly", *tests]
        started = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return "timeout", time.monotonic() - started
        finally:
            target.write_text(original, encoding="utf-8")
        return ("survived" if code == 0 else "killed"), time.monotonic() - started


def survivors_of(path: str, rel: str) -> set[str]:
    """The mutants of `rel` (`line function :: change`) a previous run's output lists as survived
    or timed out, in either form it prints them (`-v` lines or the summary). The module must be
    unchanged since (only tests added)."""
    keys = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        word, _, rest = line.strip().partition(" ")
        where, _, what = rest.strip().partition(" ")
        if not where.startswith(rel + ":"):
            continue
        line_no = where[len(rel) + 1:]
        if word in ("survived", "timeout"):
            keys.add(f"{line_no} {what}")
        elif word in ("SURVIVED", "TIMEOUT"):
            function, _, change = what.partition(": ")
            keys.add(f"{line_no} {function} :: {change}")
    return keys


def run_module(name: str, args, equivalents, base: Path) -> dict:
    entry = TARGETS[name]
    rel = entry["path"]
    source = (ROOT / rel).read_text(encoding="utf-8")
    tests = entry["tests"]
    found = mutants(rel, source, entry.get("functions"))
    if args.again:
        wanted = survivors_of(args.again, rel)
        found = [m for m in found if f"{m.line} {m.key}" in wanted]
    if args.limit:
        found = found[:args.limit]
    workers = [Workspace(base) for _ in range(max(1, args.jobs))]
    print(f"== {name} ({rel}{', ' + ', '.join(entry['functions']) if entry.get('functions') else ''}): "
          f"{len(found)} mutants, tests: {' '.join(tests)}", flush=True)
    state, took = workers[0].run(rel, baseline(source), tests, timeout=args.baseline_timeout)
    if state != "survived":
        raise SystemExit(f"mutate: {name}: the tests do not pass on the unmutated module ({state}); "
                         f"run: python -m pytest -x {' '.join(tests)}")
    timeout = args.timeout or max(30.0, took * 4 + 10)
    results: list[tuple] = [None] * len(found)
    free = list(workers)
    lock = threading.Lock()

    def one(i):
        with lock:
            ws = free.pop()
        try:
            m = found[i]
            if (name, m.key) in equivalents:
                results[i] = (m, "equivalent")
                return
            outcome, _ = ws.run(rel, m.source, tests, timeout)
            results[i] = (m, outcome)
            if args.verbose:
                print(f"  {outcome:9} {rel}:{m.line} {m.key}", flush=True)
        finally:
            with lock:
                free.append(ws)

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        list(pool.map(one, range(len(found))))
    counts = {k: sum(1 for _, o in results if o == k) for k in ("killed", "survived", "timeout", "equivalent")}
    scored = len(found) - counts["equivalent"]
    score = 100.0 * (counts["killed"] + counts["timeout"]) / scored if scored else 100.0
    used = {m.key for m, o in results if o == "equivalent"}
    stale = [k for (mod, k) in equivalents if mod == name and k not in used
             and not args.limit and not args.again]
    print(f"{name}: {len(found)} mutants: {counts['killed']} killed, {counts['survived']} survived, "
          f"{counts['timeout']} timed out, {counts['equivalent']} accepted equivalent -> "
          f"score {score:.1f} % (baseline tests {took:.1f}s, timeout {timeout:.0f}s)")
    for m, o in results:
        if o in ("survived", "timeout" if args.verbose else "-"):
            print(f"  {o.upper()} {rel}:{m.line} {m.function or '<module>'}: {m.change}")
    for key in stale:
        print(f"  note: equivalents.txt names '{name} :: {key}', which no mutant matches any more")
    return {"name": name, "score": score, **counts, "total": len(found)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules of tests/mutation/targets.py (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--timeout", type=float, default=0,
                        help="seconds per mutant (default: 4x the unmutated run + 10, at least 30)")
    parser.add_argument("--baseline-timeout", type=float, default=600)
    parser.add_argument("--fail-under", type=float, default=0, help="exit 1 if a module scores less")
    parser.add_argument("--limit", type=int, default=0, help="only the first N mutants (to try the tool)")
    parser.add_argument("--again", metavar="OUTPUT",
                        help="only the mutants a previous run's output file lists as survived or timed "
                             "out (after adding tests for them; killed ones stay killed: tests were "
                             "only added)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every mutant's outcome")
    args = parser.parse_args(argv)
    names = args.modules or list(TARGETS)
    check_table(names)
    equivalents = load_equivalents()
    if args.list:
        for name in names:
            entry = TARGETS[name]
            for m in mutants(entry["path"], (ROOT / entry["path"]).read_text(encoding="utf-8"),
                             entry.get("functions")):
                print(f"{name}: {entry['path']}:{m.line} {m.key}")
        return 0
    base = Path(tempfile.mkdtemp(prefix="bridge-mutate-"))
    try:
        summary = [run_module(n, args, equivalents, base) for n in names]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("\n| module | mutants | killed | survived | timed out | equivalent | score |")
    print("|---|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['name']} | {s['total']} | {s['killed']} | {s['survived']} | {s['timeout']} | "
              f"{s['equivalent']} | {s['score']:.1f} % |")
    return 1 if any(s["score"] < args.fail_under for s in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
