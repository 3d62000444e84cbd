"""Benchmark: ack throughput and latency of a real `cibridge serve` under signed, distinct deliveries.

Input: flags picking the parts (closed loop, open loop, exec builds/s, ack -> memory target, the
bare Flask floor) and the durabilities. Output: one line per measurement on stdout - deliveries/s,
p50/p99/max ack latency, and the builds counted in the store (every acknowledged delivery must be
built; none dropped). Everything runs on 127.0.0.1 and stops by itself.

Run: .venv/bin/python bench/load.py                    (everything, about 4 minutes)
     .venv/bin/python bench/load.py --parts floor,closed,open --rounds 3   (the goals, medians of 3)
     .venv/bin/python bench/load.py --parts closed --durability normal --duration 5

The client is one thread driving raw keep-alive HTTP/1.1 sockets with `selectors`: a Python HTTP
client per connection costs more CPU than the bridge's request path, and client and server share
the same two cores. Every request carries a fresh delivery id and a fresh `after` SHA (so the
content-key dedupe never hides one), signed like GitHub signs.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import json
import os
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAYLOAD = (Path(os.environ.get("BRIDGE_SHARED_DIR") or ROOT.parent / "shared")
           / "payloads" / "github" / "push__f110-single-commit.json")
SECRET = b"bench-secret-5d1c"
ALL_PARTS = ("floor", "closed", "open", "memory", "exec")

RULES = """\
settings:
  durability: {durability}
  dispatcher_concurrency: {concurrency}
sources:
  github: {{provider: github, secrets: ["${{env:BENCH_SECRET}}"]}}
targets:
  mem: {{kind: memory}}
  local: {{kind: exec}}
rules:
  - name: bench
    on: {{repo: f110/test, branches: ["**"]}}
    run: {run}
"""
MEMORY_RUN = '{target: mem, parameters: {SHA: "${sha}"}}'
EXEC_RUN = '{target: local, command: ["/bin/true"]}'

# The floor: a Flask view that only reads the body, under the bridge's own gunicorn settings.
FLOOR_APP = """\
import sys
sys.path.insert(0, {root!r})
from flask import Flask, request
from gunicorn.app.base import Application
from bridge.service.web import WEB_DEFAULTS

app = Flask("floor")

@app.post("/hooks/<source>")
def receive(source):
    request.stream.read()
    return {{"ok": True}}, 202

@app.get("/healthz")
def healthz():
    return {{"status": "ok"}}

class Floor(Application):
    def load_config(self):
        for key, value in WEB_DEFAULTS.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)
        self.cfg.set("bind", [sys.argv[1]])
        if sys.argv[2] != "-":
            self.cfg.set("workers", int(sys.argv[2]))
        if sys.argv[3] != "-":
            self.cfg.set("threads", int(sys.argv[3]))
        if len(sys.argv) > 4:   # the bridge's own worker class (reads each request whole first)
            from bridge.config.model import Settings
            from bridge.service.webworker import worker_class
            self.cfg.set("worker_class", worker_class(Settings()))
    def init(self, parser, opts, args):
        return None
    def load(self):
        return app

Floor().run()
"""


# --- requests ----------------------------------------------------------------------------------

class Deliveries:
    """Fresh signed push deliveries built from one real payload: new delivery id, new `after`."""

    def __init__(self, port: int, payload: Path = PAYLOAD):
        self.template = payload.read_bytes()
        self.after = json.loads(self.template)["after"].encode()
        self.host = f"127.0.0.1:{port}".encode()

    def next(self) -> tuple[str, bytes]:
        delivery = str(uuid.uuid4())
        # `after` is also head_commit.id and the commit's id: all of them name the new push.
        body = self.template.replace(self.after, os.urandom(20).hex().encode())
        digest = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        head = (b"POST /hooks/github HTTP/1.1\r\nHost: " + self.host
                + b"\r\nContent-Type: application/json\r\nUser-Agent: GitHub-Hookshot/bench"
                + b"\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: " + delivery.encode()
                + b"\r\nX-Hub-Signature-256: sha256=" + digest.encode()
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        return delivery, head + body


class Conn:
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.out = b""
        self.buf = bytearray()
        self.started = 0.0
        self.delivery = None

    def send(self, delivery: str, request: bytes, started: float) -> None:
        self.delivery, self.started = delivery, started
        self.out = request
        self.buf.clear()
        self.flush()

    def flush(self) -> None:
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            self.out = self.out[n:]

    def read(self) -> tuple[int, bool] | None:
        """(status, keep-alive) once a whole response is in; None while more is to come."""
        closed = False
        while not closed:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            closed = not chunk       # after a whole reply (Connection: close) or in the middle
            self.buf += chunk
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if closed:
                raise ConnectionError("server closed the connection")
            return None
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        length = 0
        keep = True
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
        if len(self.buf) < end + 4 + length:
            if closed:
                raise ConnectionError("server closed the connection")
            return None
        return int(head[0].split()[1]), keep and not closed

    def close(self) -> None:
        self.sock.close()


class Result:
    def __init__(self, label: str):
        self.label = label
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.accepted: list[str] = []
        self.elapsed = 0.0
        self.late = 0
        self.answered = 0            # warm-up included, for the CPU per delivery
        self.cpu: dict[str, float] = {}

    def add(self, conn: Conn, status: int, now: float) -> None:
        self.latencies.append(now - conn.started)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 202:
            self.accepted.append(conn.delivery)

    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")

    def line(self) -> str:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        extra = f"  errors {self.errors}" if self.errors else ""
        extra += f"  started >2 ms late: {self.late}" if self.late else ""
        if self.cpu and self.answered:
            per = {k: v / self.answered * 1000 for k, v in self.cpu.items()}
            extra += ("\n" + " " * 35 + "CPU ms per delivery: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
                      + f"  -> {os.cpu_count()} cores would serve {os.cpu_count() * 1000 / sum(per.values()):.0f}/s")
        return (f"{self.label:34} {self.rate():8.0f} deliveries/s   p50 {self.pct(0.5):7.1f} ms"
                f"   p99 {self.pct(0.99):7.1f} ms   max {max(self.latencies, default=0) * 1000:7.1f} ms"
                f"   [{statuses}]{extra}")


def run_load(port: int, *, connections: int, duration: float, rate: float | None = None,
             label: str, warmup: float = 1.0, cpu_of: dict | None = None,
             limit: int | None = None, deliveries=None) -> Result:
    """Closed loop (`rate` None: each connection sends its next request when the last is answered)
    or open loop (requests start on a fixed schedule at `rate`/s, whatever the answers do; a
    request whose turn comes while every connection is busy counts from its scheduled time).

    The first `warmup` seconds are driven but not measured. `cpu_of`: {name: [pid, ...]} whose
    CPU time (and the client's) is divided by the deliveries answered. `limit`: send no more
    than this many requests. `deliveries(port)`: the request maker (default: `Deliveries`)."""
    cpu_of = cpu_of or {}
    cpu0 = {k: cpu_seconds(v) for k, v in cpu_of.items()}
    client0 = time.process_time()
    gen = (deliveries or Deliveries)(port)
    result = Result(label)
    sel = selectors.DefaultSelector()
    conns = [Conn(port) for _ in range(connections)]
    idle = list(conns)
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    t0 = time.perf_counter()
    measure_from = t0 + warmup
    stop_at = measure_from + duration
    next_due = t0
    backlog: collections.deque[float] = collections.deque()

    sent = 0

    def start(c: Conn, scheduled: float) -> None:
        nonlocal sent, stop_at
        sent += 1
        if limit is not None and sent >= limit:
            stop_at = time.perf_counter()
        delivery, req = gen.next()
        c.send(delivery, req, scheduled)
        if c.out:
            sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    try:
        while True:
            now = time.perf_counter()
            if rate is None:
                if now < stop_at:
                    while idle and time.perf_counter() < stop_at:
                        start(idle.pop(0), time.perf_counter())
            else:
                while next_due <= now and next_due < stop_at:
                    backlog.append(next_due)
                    next_due += 1.0 / rate
                while backlog and idle:
                    scheduled = backlog.popleft()
                    if now - scheduled > 0.002:
                        result.late += scheduled >= measure_from
                    start(idle.pop(0), scheduled)
            if now >= stop_at and len(idle) == len(conns) and not backlog:
                break
            if rate is None or backlog or next_due >= stop_at:
                timeout = 0.05       # nothing to start before an answer comes in
            else:
                timeout = max(0.0, min(0.05, next_due - time.perf_counter()))
            for key, events in sel.select(timeout):
                c: Conn = key.data
                if events & selectors.EVENT_WRITE:
                    c.flush()
                    if not c.out:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                if not events & selectors.EVENT_READ:
                    continue
                try:
                    got = c.read()
                except (ConnectionError, OSError):
                    result.errors += 1
                    sel.unregister(c.sock)
                    c.close()
                    fresh = Conn(port)
                    conns[conns.index(c)] = fresh
                    sel.register(fresh.sock, selectors.EVENT_READ, fresh)
                    idle.append(fresh)
                    continue
                if got is None:
                    continue
                status, keep = got
                done = time.perf_counter()
                result.answered += 1
                if c.started >= measure_from:
                    result.add(c, status, done)
                elif status == 202:
                    result.accepted.append(c.delivery)   # warm-up acks must be built too
                if not keep:
                    sel.unregister(c.sock)
                    c.close()
                    c = Conn(port)
                    conns[conns.index(key.data)] = c
                    sel.register(c.sock, selectors.EVENT_READ, c)
                idle.append(c)
    finally:
        for c in conns:
            c.close()
        sel.close()
    result.elapsed = duration
    result.cpu = {k: cpu_seconds(v) - cpu0[k] for k, v in cpu_of.items()}
    if cpu_of:
        result.cpu["client"] = time.process_time() - client0
    return result


# --- the processes -----------------------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A child process answering HTTP on 127.0.0.1 (a bridge, or the floor), stopped by its pid."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict | None = None):
        self.port = port
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=str(log.parent))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[:4]} exited with {self.proc.returncode}; see {log}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{argv[:4]} did not answer within 30 s; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Bridge:
    """`cibridge serve` (or serve --no-dispatcher) on a fresh state directory."""

    def __init__(self, workdir: Path, *, durability: str, run: str, args, dispatcher: bool = True,
                 name: str = "bridge", rules: str | None = None):
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        # The last part's bridge wrote hundreds of MB; the kernel still writing them back would
        # slow this part's fsyncs and checkpoints (its `full` tail doubled): start on a quiet disk.
        os.sync()
        time.sleep(1.0)
        self.rules = self.dir / "rules.yaml"
        self.rules.write_text((rules or RULES).format(durability=durability, run=run,
                                           concurrency=args.concurrency), encoding="utf-8")
        self.state = self.dir / "var"
        self.port = free_port()
        argv = [sys.executable, "-m", "bridge", "serve", "--rules", str(self.rules), "--state-dir",
                str(self.state), "--bind", f"127.0.0.1:{self.port}"]
        if args.workers:
            argv += ["--workers", str(args.workers)]
        if not dispatcher:
            argv.append("--no-dispatcher")
        self.env = {"BENCH_SECRET": SECRET.decode(), "PYTHONPATH": str(ROOT)}
        if args.threads:
            conf = self.dir / "gunicorn.conf.py"
            conf.write_text(f"threads = {args.threads}\n", encoding="utf-8")
            self.env["BRIDGE_GUNICORN_CONFIG"] = str(conf)
        self.server = Server(argv, self.port, self.dir / "bridge.log", self.env)
        self.db = sqlite3.connect(self.state / "bridge.db", timeout=30)
        # /healthz answers once one worker serves: wait for all of them (and the dispatcher), so
        # that the CPU accounting covers every process and no worker starts late.
        want = 1 + (args.workers or 2)
        deadline = time.monotonic() + 30
        while True:
            roles = self.pids()
            if len(roles.get("web", [])) >= want and (not dispatcher or "dispatcher" in roles):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bridge did not start {want - 1} web workers within 30 s")
            time.sleep(0.05)
        time.sleep(0.5)     # the last worker's import and its first poll

    def pids(self) -> dict[str, list[int]]:
        """The web processes (gunicorn master and workers) and the dispatcher, by role."""
        roles = {"web": [], "dispatcher": []}
        for pid in process_tree(self.server.proc.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"web" in argv:
                roles["web"].append(pid)
            elif b"dispatch" in argv:
                roles["dispatcher"].append(pid)
        return {k: v for k, v in roles.items() if v}

    def job_states(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())

    def built(self, deliveries: list[str], timeout: float = 120.0) -> tuple[int, int, float]:
        """Wait until no job is open; (deliveries with a finished build, how many of `deliveries`
        have none, seconds waited)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            states = self.job_states()
            if not states.get("queued") and not states.get("running"):
                break
            time.sleep(0.1)
        waited = time.monotonic() - t0
        done = {r[0] for r in self.db.execute("SELECT delivery_id FROM jobs WHERE state = 'succeeded'")}
        return len(done), sum(1 for d in deliveries if d not in done), waited

    def stop(self) -> None:
        self.db.close()
        self.server.stop()


# --- the parts ---------------------------------------------------------------------------------

class Summary:
    """The figures the goals are about, printed together at the end."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, bool | None]] = []

    def add(self, what: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        self.rows.append((what, value, goal, ok))

    def print(self) -> None:
        print("\nsummary", flush=True)
        for what, value, goal, ok in self.rows:
            mark = "" if ok is None else ("  ok" if ok else "  MISSED")
            print(f"  {what:44} {value:>26}   {goal}{mark}", flush=True)


def report_built(bridge: Bridge, result: Result) -> bool:
    total, missing, waited = bridge.built(result.accepted)
    print(f"{'':34} built: {len(result.accepted) - missing} of {len(result.accepted)} acknowledged"
          f" (store: {total} succeeded jobs; drained {waited:.1f} s after the load)"
          + ("   MISSING BUILDS" if missing else ""), flush=True)
    return missing == 0


class Floor:
    """The bare Flask floor, up for the whole run: each open-loop measurement of the bridge is
    taken right after one of the floor at the same rate, so both see the same moment of a
    shared machine (a noisy neighbour moves the tail of both)."""

    def __init__(self, workdir: Path, args):
        self.args = args
        self.port = free_port()
        script = workdir / "floor_app.py"
        script.write_text(FLOOR_APP.format(root=str(ROOT)), encoding="utf-8")
        self.server = Server([sys.executable, str(script), f"127.0.0.1:{self.port}",
                              str(args.workers or "-"), str(args.threads or "-")]
                             + (["bridge-worker"] if args.floor_worker else []),
                             self.port, workdir / "floor.log")

    def open_p99(self, rate: float) -> float:
        r = run_load(self.port, connections=self.args.open_connections, duration=self.args.duration,
                     rate=rate, label=f"floor open loop {rate:g}/s",
                     cpu_of={"web": process_tree(self.server.proc.pid)})
        print(r.line(), flush=True)
        return r.pct(0.99)

    def closed(self, summary: Summary) -> None:
        rates = []
        for _ in range(self.args.rounds):
            r = run_load(self.port, connections=64, duration=self.args.duration,
                         label="floor closed loop 64 conns",
                         cpu_of={"web": process_tree(self.server.proc.pid)})
            print(r.line(), flush=True)
            rates.append(r.rate())
        summary.add("bare Flask floor, closed loop 64 conns",
                    f"{statistics.median(rates):.0f} requests/s" + _of_rounds(rates))

    def stop(self) -> None:
        self.server.stop()


def _of_rounds(values: list) -> str:
    return f" (median of {len(values)})" if len(values) > 1 else ""


def part_closed(workdir: Path, args, durability: str, summary: Summary) -> None:
    bridge = Bridge(workdir, durability=durability, run=MEMORY_RUN, args=args,
                    name=f"closed-{durability}")
    goal = {"normal": 2000, "full": 1600}[durability]
    try:
        for n in args.connections:
            rates, all_built = [], True
            for _ in range(args.rounds if n == 64 else 1):
                r = run_load(bridge.port, connections=n, duration=args.duration,
                             label=f"{durability:6} closed loop {n:3d} conns", cpu_of=bridge.pids())
                print(r.line(), flush=True)
                all_built = report_built(bridge, r) and all_built
                rates.append(r.rate())
            if n == 64:
                rate = statistics.median(rates)
                summary.add(f"{durability} closed loop 64 conns, all built",
                            f"{rate:.0f} acks/s{_of_rounds(rates)}"
                            f"{'' if all_built else ' (BUILDS MISSING)'}",
                            f"goal >= {goal}", all_built and rate >= goal)
    finally:
        bridge.stop()


def part_open(workdir: Path, args, durability: str, floor: Floor | None, summary: Summary) -> None:
    """Each round: per rate, the floor (if measured) and then the bridge; the summary gives the
    median over the rounds of the bridge's p99, the floor's, and of their ratio."""
    bridge = Bridge(workdir, durability=durability, run=MEMORY_RUN, args=args,
                    name=f"open-{durability}")
    seen: dict[float, list[tuple[float, float | None]]] = {rate: [] for rate in args.rates}
    all_built = True
    try:
        for _ in range(args.rounds):
            for rate in args.rates:
                base = floor.open_p99(rate) if floor is not None else None
                r = run_load(bridge.port, connections=args.open_connections, duration=args.duration,
                             rate=rate, label=f"{durability:6} open loop {rate:g}/s",
                             cpu_of=bridge.pids())
                p99 = r.pct(0.99)
                beside = (f"   floor p99 {base:.1f} ms -> ratio {p99 / base:.2f} (goal <= 3)"
                          if base else "")
                print(r.line() + beside, flush=True)
                all_built = report_built(bridge, r) and all_built
                seen[rate].append((p99, base))
        for rate, runs in (seen.items() if floor is not None else ()):
            ratio = statistics.median(p99 / base for p99, base in runs)
            summary.add(f"{durability} open loop {rate:g}/s p99 (floor p99)",
                        f"{statistics.median(p for p, _ in runs):.1f} ms "
                        f"({statistics.median(b for _, b in runs):.1f} ms)",
                        f"ratio {ratio:.2f}{_of_rounds(runs)}, goal <= 3",
                        all_built and ratio <= 3)
    finally:
        bridge.stop()


def part_memory(workdir: Path, args, durability: str, summary: Summary) -> None:
    """Ack -> the memory target has the job, with an idle dispatcher: one delivery at a time, the
    ack time taken by the client, the target's time from the job's attempt row (same clock)."""
    bridge = Bridge(workdir, durability=durability, run=MEMORY_RUN, args=args,
                    name=f"memory-{durability}")
    gen = Deliveries(bridge.port)
    acks = {}
    try:
        conn = Conn(bridge.port)
        for _ in range(args.samples):
            delivery, req = gen.next()
            conn.send(delivery, req, time.perf_counter())
            got = None
            while got is None:
                selectors.select.select([conn.sock], [conn.sock] if conn.out else [], [], 1.0)
                conn.flush()
                got = conn.read()
            acks[delivery] = time.time()
            time.sleep(args.memory_gap)
        conn.close()
        bridge.built(list(acks))
        rows = bridge.db.execute(
            "SELECT j.delivery_id, a.finished_at FROM jobs j JOIN job_attempts a ON a.job_id = j.id"
            " WHERE a.outcome = 'succeeded'").fetchall()
        lat = sorted((finished - acks[d]) * 1000 for d, finished in rows if d in acks)
        if not lat:
            print(f"{durability:6} ack -> memory target: no job finished", flush=True)
            summary.add(f"{durability} ack -> memory target p50", "none built", "goal < 20 ms", False)
            return
        p50 = lat[len(lat) // 2]
        print(f"{durability:6} ack -> memory target has the job  p50 {p50:6.1f} ms"
              f"   p99 {lat[min(len(lat) - 1, int(0.99 * len(lat)))]:6.1f} ms   ({len(lat)} of "
              f"{len(acks)} built; goal p50 < 20 ms)", flush=True)
        summary.add(f"{durability} ack -> memory target p50", f"{p50:.1f} ms", "goal < 20 ms",
                    p50 < 20 and len(lat) == len(acks))
    finally:
        bridge.stop()


def part_exec(workdir: Path, args, durability: str, summary: Summary) -> None:
    """Builds of /bin/true per second: queue N deliveries with no dispatcher running, then start
    one and time it from its first claim to its last result (the attempt rows' own clock)."""
    bridge = Bridge(workdir, durability=durability, run=EXEC_RUN, args=args, dispatcher=False,
                    name=f"exec-{durability}")
    dispatcher = None
    try:
        accepted = run_load(bridge.port, connections=16, duration=600, label="exec queue fill",
                            warmup=0.0, limit=args.exec_jobs).accepted
        argv = [sys.executable, "-m", "bridge", "dispatch", "--rules", str(bridge.rules),
                "--state-dir", str(bridge.state)]
        log = open(bridge.dir / "dispatch.log", "ab")
        dispatcher = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **bridge.env}, cwd=str(bridge.dir))
        total, missing, _ = bridge.built(accepted, timeout=300)
        cpu = cpu_seconds([dispatcher.pid])
        first, last = bridge.db.execute(
            "SELECT min(started_at), max(finished_at) FROM job_attempts").fetchone()
        states = bridge.job_states()
        rate = total / (last - first) if first and last and last > first else 0.0
        print(f"{durability:6} exec /bin/true builds            {rate:8.0f} builds/s   "
              f"({total} of {len(accepted)} queued deliveries built, missing {missing}; "
              f"job states {states}; concurrency {args.concurrency}; dispatcher CPU "
              f"{cpu / max(total, 1) * 1000:.2f} ms per build, start-up included)", flush=True)
        summary.add(f"{durability} exec /bin/true, none dropped",
                    f"{rate:.0f} builds/s{'' if not missing else f' ({missing} MISSING)'}",
                    "goal >= 1000", rate >= 1000 and not missing)
    finally:
        if dispatcher is not None:
            dispatcher.send_signal(signal.SIGTERM)
            try:
                dispatcher.wait(30)
            except subprocess.TimeoutExpired:
                dispatcher.kill()
                dispatcher.wait()
            log.close()
        bridge.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(ALL_PARTS),
                   help=f"comma-separated, from {', '.join(ALL_PARTS)} (default: all)")
    p.add_argument("--durability", default="full,normal", help="full,normal (default both)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per load run (default 10)")
    p.add_argument("--connections", default="1,8,64", help="closed-loop connection counts")
    p.add_argument("--rates", default="200,500", help="open-loop deliveries per second")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure the closed loop (64 conns) and each open-loop rate this many times, "
                        "the open loop each time right after the floor; the summary gives medians")
    p.add_argument("--open-connections", type=int, default=64,
                   help="keep-alive connections the open loop spreads its requests over")
    p.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: the bridge's)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads per gunicorn worker (default: the bridge's)")
    p.add_argument("--concurrency", type=int, default=4, help="dispatcher concurrency")
    p.add_argument("--samples", type=int, default=100, help="ack -> memory samples")
    p.add_argument("--memory-gap", type=float, default=0.05,
                   help="seconds between ack -> memory samples (the dispatcher idles in between)")
    p.add_argument("--exec-jobs", type=int, default=3000, help="jobs to queue for the exec part")
    p.add_argument("--floor-worker", action="store_true",
                   help="the floor on the bridge's own gunicorn worker class (webworker.py), "
                        "not gthread: what that worker costs")
    p.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases)")
    args = p.parse_args(argv)
    args.parts = [x for x in args.parts.split(",") if x]
    unknown = set(args.parts) - set(ALL_PARTS)
    if unknown:
        p.error(f"unknown parts: {', '.join(sorted(unknown))}")
    args.connections = [int(x) for x in args.connections.split(",") if x]
    args.rates = [float(x) for x in args.rates.split(",") if x]
    durabilities = [x for x in args.durability.split(",") if x]
    if set(durabilities) - {"full", "normal"}:
        p.error("--durability takes full and/or normal")

    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    print(f"bridge load bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, payload "
          f"{PAYLOAD.name} ({PAYLOAD.stat().st_size} bytes), {args.duration:g} s per run "
          f"(+1 s warm-up); work dir {workdir}", flush=True)
    summary = Summary()
    floor = None
    try:
        if "floor" in args.parts:
            floor = Floor(workdir, args)
            if "closed" in args.parts:
                floor.closed(summary)
        for durability in durabilities:
            if "closed" in args.parts:
                part_closed(workdir, args, durability, summary)
            if "open" in args.parts:
                part_open(workdir, args, durability, floor, summary)
            if "memory" in args.parts:
                part_memory(workdir, args, durability, summary)
            if "exec" in args.parts:
                part_exec(workdir, args, durability, summary)
        summary.print()
        print(f"  (load average at the end {os.getloadavg()[0]:.1f}; figures from a busy machine "
              "are low: see the CPU ms per delivery lines)", flush=True)
    finally:
        if floor is not None:
            floor.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
