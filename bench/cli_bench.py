"""Benchmark: how long `cibridge --version`, `--help` and `check` of the shipped rules.yaml take.

Input: flags (runs, another checkout to compare with). Output: the median of N runs of each
command, wall clock and the child's CPU time (user + system: steadier on a busy machine), beside the floor of the same run: `python -c pass` (the interpreter's own start) and
`python -c "import click"`. Alternates between this checkout and `--before` in the same run.

Run: .venv/bin/python bench/cli_bench.py
     .venv/bin/python bench/cli_bench.py --before /tmp/before --runs 9
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(argv, env, cwd) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{argv}: exit {out.returncode}: {out.stderr.decode()[-500:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout of the bridge, measured alternately in the same run")
    args = parser.parse_args(argv)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bridge-cli-") as tmp:
        (Path(tmp) / "var").mkdir()
        (Path(tmp) / "var" / "dev-secret").write_text("0123456789abcdef\n")
        rules = Path(tmp) / "rules.yaml"
        rules.write_bytes((ROOT / "rules.yaml").read_bytes())
        cases = {"floor: python -c pass": [py, "-c", "pass"],
                 "floor: python -c 'import click'": [py, "-c", "import click"],
                 "cibridge --version": [py, "-m", "bridge", "--version"],
                 "cibridge --help": [py, "-m", "bridge", "--help"],
                 "cibridge check rules.yaml (shipped)": [py, "-m", "bridge", "check", str(rules)]}
        roots = [("this", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
        times = {(name, case): [] for name, _ in roots for case in cases}
        for _ in range(args.runs):
            for case, cmd in cases.items():
                for name, root in roots:
                    if case.startswith("floor") and name != "this":
                        continue
                    env = {**os.environ, "PYTHONPATH": str(root)}
                    times[(name, case)].append(timed(cmd, env, tmp))
    for case in cases:
        cells = [f"{name} {statistics.median(t[0] for t in times[(name, case)]):.3f} s "
                 f"(CPU {statistics.median(t[1] for t in times[(name, case)]):.3f} s)"
                 for name, _ in roots if times[(name, case)]]
        print(f"{case:40} {'; '.join(cells)}  (median of {args.runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
