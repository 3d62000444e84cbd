"""Benchmark: the dispatcher's CPU per job, in one process, on a queue filled beforehand.

Input: flags (jobs, kind, concurrency, --root). Output: jobs per second and CPU milliseconds per
job (time.process_time over the whole run: claims, the target, the recorded results, the
background thread), for the memory target (the dispatcher's own cost) or exec `/bin/true`.
A real SQLite store (durability normal) in a temporary directory; the jobs are queued first,
then a real `Dispatcher` runs until every one has succeeded.

Run: .venv/bin/python bench/dispatch_bench.py [--jobs 3000] [--kind memory|exec] [--concurrency 4]
     [--root OLDER_CHECKOUT]   (the same measurement on another checkout's code, e.g. before a change)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--kind", choices=("memory", "exec"), default="memory")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]),
                        help="the checkout whose bridge/ is measured (default: this one)")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.root)
    from bridge.dispatch.loop import Dispatcher
    from bridge.events import Event
    from bridge.jobs import Job
    from bridge.policies import RetryPolicy
    from bridge.store import NewDelivery, Store
    from bridge.targets.exec import ExecTarget
    from bridge.targets.memory import MemoryTarget
    import bridge
    if not Path(bridge.__file__).resolve().is_relative_to(Path(args.root).resolve()):
        parser.error(f"bridge is imported from {bridge.__file__}, not from {args.root}")

    def delivery(i: int) -> NewDelivery:
        sha = f"{i:040x}"
        event = Event(provider="github", source="github", delivery_id=f"d-{i}", kind="push",
                      repo="acme/api", ref="refs/heads/main", ref_name="main", before="0" * 40,
                      after=sha, sha=sha)
        return NewDelivery(source="github", provider="github", delivery_id=f"d-{i}",
                           received_at=time.time() - 1, headers={}, body=b"{}", event=event,
                           outcome="matched", reason="", verdicts=[], rules_version="bench",
                           content_key=None)

    rates, cpus = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bridge-dispatch-bench-") as tmp:
            store = Store.open(f"sqlite:///{tmp}/bridge.db", durability="normal")
            name = f"t{len(rates)}"
            if args.kind == "memory":
                target, request = MemoryTarget(name, {}), {"target": name, "parameters": {"SHA": "x"}}
            else:
                target, request = ExecTarget(name, {"cwd": tmp}), {"target": name, "command": ["/bin/true"]}
            for i in range(args.jobs):
                store.ingest(delivery(i), [Job(rule="build", target=name, kind=args.kind, request=request)])
            dispatcher = Dispatcher(store, {name: target}, {name: RetryPolicy()}, owner="bench",
                                    concurrency=args.concurrency, poll_interval=0.01)
            stop = threading.Event()
            cpu0, wall0 = time.process_time(), time.monotonic()
            thread = threading.Thread(target=dispatcher.run, args=(stop,))
            thread.start()
            while store.queue_stats(time.time())["jobs"]["succeeded"] < args.jobs:
                time.sleep(0.05)
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
            stop.set()
            thread.join(60)
            store.close()
            rates.append(args.jobs / wall)
            cpus.append(cpu / args.jobs * 1000)
    rates.sort(), cpus.sort()
    print(f"dispatcher, {args.kind} target, {args.jobs} jobs, concurrency {args.concurrency}, "
          f"{args.root}: {rates[len(rates) // 2]:.0f} jobs/s, CPU {cpus[len(cpus) // 2]:.3f} ms per job "
          f"(median of {args.rounds}; best {cpus[0]:.3f} ms; load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
