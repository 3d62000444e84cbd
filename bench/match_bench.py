"""Benchmark: rule matching time per event against 10, 1,000 and 10,000 rules over 2,000 repos.

Run: .venv/bin/python bench/match_bench.py   (prints microseconds per event; goal < 50 us at 10,000)
The last column is match as ingress runs it: plus, when no rule matched, the search for the
nearest rules its answer names (`RuleSet.nearest`).
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.config.load import load_config  # noqa: E402
from bridge.events import Commit, Event  # noqa: E402

REPOS = [f"org{i % 40}/repo{i}" for i in range(2000)]
BRANCH_SETS = ["[main]", "[main, 'release/**']", "['**', '!dependabot/**']", "['feature/*']"]


def rules_text(n: int, rng: random.Random) -> str:
    out = ["sources:", "  github: {provider: github, secrets: ['${env:S}']}",
           "targets:", "  mem: {kind: memory}", "rules:"]
    for i in range(n):
        repo = REPOS[i % len(REPOS)]
        paths = "" if i % 3 else ", paths: ['src/**', '!src/docs/**']"
        out.append(f"  - name: rule-{i}")
        out.append(f"    on: {{repo: {repo}, branches: {rng.choice(BRANCH_SETS)}{paths}}}")
        out.append("    run: {target: mem, parameters: {SHA: '${sha}', BRANCH: '${branch}'}}")
    return "\n".join(out) + "\n"


def event(repo: str, branch: str) -> Event:
    sha = "c" * 40
    return Event(provider="github", source="github", delivery_id="bench", kind="push", repo=repo,
                 ref=f"refs/heads/{branch}", ref_name=branch, before="b" * 40, after=sha, sha=sha,
                 commits=(Commit(id=sha, message="change", modified=("src/app/main.py", "README.md")),),
                 head_message="change")


def main() -> None:
    rng = random.Random(7)
    print(f"{'rules':>7} {'load s':>8} {'us/event':>10} {'matched/event':>14} {'as ingress us':>14}")
    for n in (10, 1_000, 10_000):
        t0 = time.perf_counter()
        config = load_config("bench.yaml", text=rules_text(n, rng), environ={"S": "x"})
        load_s = time.perf_counter() - t0
        ruleset = config.ruleset
        events = [event(rng.choice(REPOS), rng.choice(["main", "release/1.2", "feature/x", "dev"]))
                  for _ in range(2000)]
        matched = 0
        rounds = 5
        t0 = time.perf_counter()
        for _ in range(rounds):
            for e in events:
                matched += sum(1 for v in ruleset.match(e) if v.matched)
        per_event = (time.perf_counter() - t0) / (rounds * len(events)) * 1e6
        t0 = time.perf_counter()
        for _ in range(rounds):
            for e in events:
                verdicts = ruleset.match(e)
                if not any(verdicts):
                    ruleset.nearest(e, verdicts)
        with_near = (time.perf_counter() - t0) / (rounds * len(events)) * 1e6
        print(f"{n:>7} {load_s:>8.2f} {per_event:>10.1f} {matched / (rounds * len(events)):>14.2f} "
              f"{with_near:>14.1f}")


if __name__ == "__main__":
    main()
