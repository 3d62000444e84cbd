"""A real `cibridge serve` for the service tests: rules with an exec target that records each run,
signed pushes of a real payload, counts of builds and job states read from the bridge's SQLite file,
the `start_bridge` fixture and the operator CLI run as subprocesses."""
from __future__ import annotations

import collections
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from helpers.rules import SECRET_ENV
from helpers.process import ROOT, BridgeProcess
from helpers.push import push as build_push


PAYLOAD = "github/push__f110-single-commit.json"


# One line per run of a job: "<job id> <delivery id>".
RECORD = 'echo "$BRIDGE_JOB_ID $BRIDGE_DELIVERY" >> "$BUILDS"'


def rules(builds, run: str, *, settings: str = "", extra_rules: str = "", env: dict | None = None) -> str:
    """Rules with one exec target `local` (its environment `env`, else BUILDS=`builds`) and one rule
    `build` for pushes to f110/test's branch test, running `run`."""
    return textwrap.dedent("""\
        settings:
          durability: normal
          lease_seconds: 2
        {settings}
        sources:
          github:
            provider: github
            secrets: ["${{env:GH_SECRET}}"]
        targets:
          local:
            kind: exec
            env: {env}
        rules:
          - name: build
            on: {{repo: f110/test, branches: [test]}}
            run: {run}
        {extra_rules}""").format(env=json.dumps(env if env is not None else {"BUILDS": str(builds)}),
                                 run=run, settings=textwrap.indent(settings, "  "),
                                 extra_rules=textwrap.indent(extra_rules, ""))


def push(*, branch: str | None = None, delivery: str | None = None, pad: int = 0):
    """A fresh push of PAYLOAD: (delivery id, body, headers), signed."""
    return tuple(build_push(ref=branch and f"refs/heads/{branch}", delivery=delivery, pad=pad, template=PAYLOAD))


def build_counts(path) -> collections.Counter:
    """job id -> how many times it ran."""
    if not path.exists():
        return collections.Counter()
    return collections.Counter(int(line.split()[0]) for line in path.read_text().splitlines() if line)


def db(bridge) -> sqlite3.Connection:
    conn = sqlite3.connect(bridge.state / "bridge.db", timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def job_states(bridge) -> dict[str, int]:
    with db(bridge) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


def settled(bridge, expected_jobs: int | None = None) -> bool:
    states = job_states(bridge)
    if states.get("queued") or states.get("running"):
        return False
    return expected_jobs is None or sum(states.values()) >= expected_jobs


def half_stored(bridge) -> list[str]:
    """Deliveries stored as matched without their jobs: must never exist."""
    with db(bridge) as conn:
        return [r[0] for r in conn.execute(
            "SELECT id FROM deliveries d WHERE outcome = 'matched' "
            "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id)")]


@pytest.fixture
def start_bridge(tmp_path):
    """start_bridge(rules_text, **BridgeProcess kwargs) -> a running bridge, stopped at teardown."""
    started = []

    def start(text, *, directory=None, state=None, **kw) -> BridgeProcess:
        bp = BridgeProcess(directory or tmp_path / f"bridge{len(started)}", text, env=SECRET_ENV, **kw)
        if state is not None:
            bp.state = state
        started.append(bp)
        return bp.start()

    yield start
    for bp in started:
        bp.stop()


def cli(*args, timeout=60) -> subprocess.CompletedProcess:
    return cli_many(args, timeout=timeout)[0]


def cli_many(*commands, timeout=60) -> list[subprocess.CompletedProcess]:
    """`bridge ARGS...` as subprocesses, run side by side; their results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "bridge", *map(str, args)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, **SECRET_ENV, "NO_PROXY": "127.0.0.1,localhost"})
             for args in commands]
    done = []
    for args, p in zip(commands, procs):
        out, err = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done
