"""Benchmark: CPU a web worker spends per webhook delivery, measured in one process without HTTP.

Input: flags (deliveries, rounds, --profile). Output: CPU microseconds per delivery
(time.process_time: CPU, not wall time; other load on a 2-core machine still moves it by 10-20%
through caches, so compare medians of a few runs) and, with --profile, cProfile's top 25 by own time.
It builds the real app (`create_app`, a real SQLite store with durability normal, the JSON log
handler writing to /dev/null, a Metrics instance with its own registry) and posts distinct signed
push deliveries (fresh delivery id and `after`, as bench/load.py makes them) through the WSGI app.

Run: .venv/bin/python bench/profile_ingest.py [-n 1000] [--rounds 9] [--profile] [--multiprocess]
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import hmac
import io
import json
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAYLOAD = (Path(os.environ.get("BRIDGE_SHARED_DIR") or ROOT.parent / "shared")
           / "payloads" / "github" / "push__f110-single-commit.json")
SECRET = "bench-secret-5d1c"

# tests/conftest.py's BASE_RULES, with durability normal as bench/load.py runs it.
RULES = """\
settings:
  durability: normal
sources:
  github:
    provider: github
    secrets: ["${env:BENCH_SECRET}", "${env:BENCH_SECRET_OLD}"]
  gitlab:
    provider: gitlab
    secrets: ["${env:BENCH_SECRET}"]
targets:
  mem:
    kind: memory
rules:
  - name: every-branch
    on: {repo: "**", branches: ["**"]}
    run: {target: mem, parameters: {SHA: "${sha}", BRANCH: "${branch}"}}
  - name: tags
    on: {repo: "**", tags: ["**"]}
    run: {target: mem, parameters: {TAG: "${tag}"}}
"""


def environs(n: int) -> list[dict]:
    """`n` WSGI environs of distinct signed push deliveries (built before the clock starts)."""
    template = PAYLOAD.read_bytes()
    after = json.loads(template)["after"].encode()
    headers = json.loads((PAYLOAD.parent.parent / "headers.json").read_text())[
        f"github/{PAYLOAD.name}"]
    out = []
    for _ in range(n):
        # `after` is also head_commit.id and the commit's id: all of them name the new push.
        body = template.replace(after, os.urandom(20).hex().encode())
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        out.append((body, {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/hooks/github", "SCRIPT_NAME": "",
            "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http", "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
            "CONTENT_TYPE": headers["Content-Type"], "CONTENT_LENGTH": str(len(body)),
            "HTTP_HOST": "127.0.0.1:8080", "HTTP_USER_AGENT": headers["User-Agent"],
            "HTTP_X_GITHUB_EVENT": "push", "HTTP_X_GITHUB_DELIVERY": str(uuid.uuid4()),
            "HTTP_X_HUB_SIGNATURE_256": f"sha256={digest}",
        }))
    return out


def build_app(workdir: Path):
    os.environ["BENCH_SECRET"] = SECRET
    os.environ["BENCH_SECRET_OLD"] = "bench-old-secret-77"
    from bridge.config.load import load_config
    from bridge.logs import setup
    from bridge.metrics import Metrics
    from bridge.store import Store
    from bridge.web.app import create_app
    rules = workdir / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    config = load_config(rules)
    setup(stream=open(os.devnull, "w"))
    # As a web worker opens it: the dispatcher copies the WAL back (Store.checkpoint, here between
    # rounds), so a commit is the delivery's own pages and never a checkpoint of others'.
    store = Store.open(f"sqlite:///{workdir / 'bridge.db'}", durability="normal",
                       background_checkpoints=True)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics = Metrics()
    else:
        from prometheus_client import CollectorRegistry
        metrics = Metrics(registry=CollectorRegistry(auto_describe=True))
    return create_app(config, store=store, state_dir=str(workdir), metrics=metrics), store


def post_all(app, requests) -> None:
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    for body, environ in requests:
        environ = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        for _ in app(environ, start_response):
            pass
        if not statuses[-1].startswith("202"):
            raise SystemExit(f"unexpected reply {statuses[-1]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="deliveries per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=9,
                        help="timed rounds (default 9); the best and the median are printed")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 25 by tottime")
    parser.add_argument("--multiprocess", action="store_true",
                        help="metrics in prometheus-client's multiprocess files, as under `cibridge serve`")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bridge-profile-") as tmp:
        workdir = Path(tmp)
        if args.multiprocess:
            (workdir / "metrics").mkdir()
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "metrics")
        app, store = build_app(workdir)
        post_all(app, environs(200))    # warm up: imports, caches, the first connection
        results = []
        for _ in range(args.rounds):
            requests = environs(args.n)
            started = time.process_time()
            post_all(app, requests)
            results.append((time.process_time() - started) / args.n * 1e6)
            store.checkpoint()      # the dispatcher's part, outside the timing
        print(f"CPU per delivery: best {min(results):.0f} us, median {statistics.median(results):.0f} us"
              f" ({args.rounds} rounds of {args.n}; load average {os.getloadavg()[0]:.1f})")
        if args.profile:
            requests = environs(args.n)
            profiler = cProfile.Profile()
            profiler.enable()
            post_all(app, requests)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("PROFILE_N", "25")))
        store.close()
        logging.getLogger("bridge").handlers.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
