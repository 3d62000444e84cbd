"""Metrics: Prometheus counters and histograms shared by every gunicorn worker and the dispatcher.

Input: events from ingress and the dispatcher (`Metrics.delivery(...)`, `Metrics.job(...)`). Output:
`/metrics` text in Prometheus format. With several processes, prometheus-client's multiprocess
mode aggregates them: `cibridge serve` points PROMETHEUS_MULTIPROC_DIR at `metrics_dir()`, in memory.
No label ever carries a secret, a body or a URL: only source, rule, target and outcome names.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

from bridge.scrape_metrics import families_text, scrape_time_metrics

log = logging.getLogger("bridge.metrics")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DISPATCH_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 86400)
SENDER_WARN_AFTER = 3   # GitLab disables a hook after 4 failures in a row: warn before that
UNKNOWN_SOURCE = "(unknown)"   # one label for every unknown /hooks/<name>: names are the caller's
STREAKS_FILE = "sender-streaks.json"
_VALUE_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")   # prometheus-client's <type>_<pid>.db
FAILURE_LOG_INTERVAL = 60.0   # seconds between two log lines about failing metric writes


def metrics_dir(state_dir) -> Path:
    """Where the processes of one bridge keep their metric files: in memory, never on the state
    disk. prometheus-client maps them sparsely, and a worker touching a new page of one on a full
    disk dies of SIGBUS instead of answering 503. systemd's RuntimeDirectory= (/run/bridge) when
    set, else /dev/shm (one directory per state dir), else the state dir."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "metrics"
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return shm_metrics_dir(state_dir)
    return Path(state_dir) / "metrics"


def shm_metrics_dir(state_dir) -> Path:
    """The /dev/shm directory of the bridge whose state directory is `state_dir`."""
    key = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]
    return Path("/dev/shm") / f"bridge-metrics-{os.getuid()}-{key}"


def use_multiprocess_dir(state_dir) -> str:
    """Point prometheus-client at this bridge's metrics directory (creating it, clearing nothing)."""
    path = metrics_dir(state_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return str(path)


def prepare_multiprocess_dir(state_dir) -> str:
    """The metrics directory for a starting `cibridge serve`/`cibridge web`: value files of processes
    that are gone are removed (a restart resets the counters, as Prometheus expects), those of live
    processes stay (a dispatcher running under its own unit keeps its counts)."""
    path = metrics_dir(state_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for f in path.iterdir():
        m = _VALUE_FILE.match(f.name)
        if m and not process_alive(int(m.group(1))):
            f.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return str(path)


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        pass
    return True


class _FailureLog:
    """Logs metric writes that fail (their directory removed, memory full) at most once every
    FAILURE_LOG_INTERVAL seconds per process, with how many failed in between: a count is never
    worth a delivery's reply or a job's result, nor a log line per request."""

    def __init__(self, interval: float = FAILURE_LOG_INTERVAL, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._missed = 0
        self._lock = threading.Lock()

    def __call__(self, what: str, exc: BaseException) -> None:
        now = self.clock()
        with self._lock:
            if now < self._next:
                self._missed += 1
                return
            self._next = now + self.interval
            missed, self._missed = self._missed, 0
        log.error("cannot count %s in the metrics (%s: %s); deliveries and jobs go on uncounted%s",
                  what, type(exc).__name__, exc,
                  f"; {missed} more failed since the last report" if missed else "")


class _LocalStreaks:
    """Error streaks of one process (no multiprocess directory: tests, `bridge` in one process)."""

    def __init__(self):
        self._streaks: dict[str, int] = {}
        self._lock = threading.Lock()

    def update(self, source: str, error: bool, then) -> int:
        with self._lock:
            streak = self._streaks.get(source, 0) + 1 if error else 0
            self._streaks[source] = streak
            then(streak)
        return streak


class _SharedStreaks:
    """Error streaks shared by every process of the service: a small JSON file beside the metric
    files, read and written under flock. A streak counts replies from all workers, so with
    several workers it is still the streak the git host sees. `then(streak)` runs under the lock,
    so the last gauge write is always the newest streak."""

    def __init__(self, path: Path):
        self.path = path
        self._seen: tuple | None = None   # (mtime_ns, size) when this process last saw no streak

    def update(self, source: str, error: bool, then) -> int:
        if not error and self._seen is not None:
            # The common case, a good reply while no source has a streak: one stat, no lock.
            try:
                st = os.stat(self.path)
                if (st.st_mtime_ns, st.st_size) == self._seen:
                    then(0)
                    return 0
            except OSError:
                pass
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                streaks = json.loads(os.pread(fd, 1 << 20, 0) or b"{}")
            except ValueError:
                streaks = None
            if not isinstance(streaks, dict):
                streaks = {}   # a damaged file costs the streaks so far, never a reply
            old = streaks.get(source, 0)
            streak = old + 1 if error else 0
            if streak != old:
                streaks[source] = streak
                data = json.dumps(streaks).encode()
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            st = os.fstat(fd)
            self._seen = (st.st_mtime_ns, st.st_size) if not any(streaks.values()) else None
            then(streak)
            return streak
        finally:
            os.close(fd)   # releases the lock


class Metrics:
    """The bridge's metrics. One instance per process; cheap to call on the request path."""

    def __init__(self, registry=None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = registry if registry is not None else (
            CollectorRegistry(auto_describe=True) if not self.multiprocess else None)
        # Multiprocess: values live in files under PROMETHEUS_MULTIPROC_DIR, no registry needed.
        kw = {"registry": self.registry}
        self.deliveries = Counter("bridge_deliveries", "Deliveries answered, by source, outcome and status",
                                  ["source", "outcome", "status"], **kw)
        self.verification_failures = Counter("bridge_verification_failures",
                                             "Deliveries refused for a bad or missing signature/token",
                                             ["source"], **kw)
        self.rules_matched = Counter("bridge_rules_matched", "Rules matched by accepted deliveries",
                                     ["rule"], **kw)
        self.ack_latency = Histogram("bridge_ack_latency_seconds",
                                     "Time from request to reply (the commit included)", ["source"],
                                     buckets=LATENCY_BUCKETS, **kw)
        # Not "bridge_jobs": that is the gauge of jobs in the store by state (_store_metrics).
        # A retry is counted once, in bridge_job_retries_total.
        self.jobs = Counter("bridge_job_outcomes", "Job steps by target and state (started, "
                            "succeeded, failed, skipped, dead)", ["target", "state"], **kw)
        self.retries = Counter("bridge_job_retries", "Transient target failures retried", ["target"], **kw)
        self.dead_letters = Counter("bridge_dead_letters", "Jobs sent to the dead letter", ["target"], **kw)
        self.dispatch_latency = Histogram("bridge_dispatch_latency_seconds",
                                          "Time from queued to accepted by the target", ["target"],
                                          buckets=DISPATCH_BUCKETS, **kw)
        self.build_results = Counter("bridge_build_results", "Finished builds by target and result",
                                     ["target", "result"], **kw)
        self.recovered_deliveries = Counter(
            "bridge_recovered_deliveries", "Deliveries reconcile recovered (redelivery asked of the "
            "host, or a push synthesized), by source and reason", ["source", "reason"], **kw)
        gauge_kw = dict(kw)
        if self.multiprocess:
            # Every process writes the shared streak; the newest write is the true value.
            gauge_kw["multiprocess_mode"] = "mostrecent"
        self.sender_errors = Gauge("bridge_sender_consecutive_errors",
                                   "Error replies in a row to a source (GitLab disables a hook after 4)",
                                   ["source"], **gauge_kw)
        self._delivery_children: dict[tuple, tuple] = {}   # (source, outcome, status) -> children
        self._rule_children: dict[str, object] = {}
        self.failure_log = _FailureLog()
        self._streaks = (_SharedStreaks(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / STREAKS_FILE)
                         if self.multiprocess else _LocalStreaks())

    # -- ingress ----------------------------------------------------------------------------

    def delivery(self, source: str, status: int, outcome: str, seconds: float, matched=()) -> None:
        """One reply to a git host. A 404 is an unknown source (DESIGN.md's reply table): it is
        counted under one label, since the name in the URL is whatever the caller wrote. Never
        raises: the delivery is stored by now, and its reply must say so."""
        try:
            self._delivery(source, status, outcome, seconds, matched)
        except Exception as exc:   # noqa: BLE001 - see the docstring
            self._failed("a delivery", exc)

    def _delivery(self, source: str, status: int, outcome: str, seconds: float, matched) -> None:
        label = source if source and status != 404 else UNKNOWN_SOURCE
        key = (label, outcome, status)
        children = self._delivery_children.get(key)
        if children is None:
            children = self._delivery_children[key] = self._children_of(*key)
        counter, latency, refused, gauge = children
        counter.inc()
        latency.observe(seconds)
        if refused is not None:
            refused.inc()
        for rule in matched:
            child = self._rule_children.get(rule)
            if child is None:
                child = self._rule_children[rule] = self.rules_matched.labels(rule)
            child.inc()
        if gauge is None:
            return   # an unknown source is not a configured sender
        try:
            streak = self._streaks.update(label, status >= 400, gauge.set)
        except OSError as exc:   # sender health must never cost a delivery its reply
            self._failed(f"the error streak of source '{label}'", exc)
            return
        if streak >= SENDER_WARN_AFTER:
            log.warning("source '%s' got %d error replies in a row; GitLab disables a hook after 4 "
                        "(GitHub never retries): check its secret and payloads", label, streak,
                        extra={"source": label, "streak": streak, "status": status})

    def _children_of(self, label: str, outcome: str, status: int) -> tuple:
        # `.labels()` hashes and validates its labels on every call; a delivery's are few and
        # bounded (configured sources only: an unknown one is UNKNOWN_SOURCE), so keep them.
        return (self.deliveries.labels(label, outcome, str(status)), self.ack_latency.labels(label),
                self.verification_failures.labels(label) if status == 401 else None,
                self.sender_errors.labels(label) if status != 404 else None)

    # -- dispatcher -------------------------------------------------------------------------

    def job(self, target: str, state: str, *, queued_for: float | None = None) -> None:
        """One step of a job. Never raises: the step is recorded in the store already."""
        try:
            self._job(target, state, queued_for)
        except Exception as exc:   # noqa: BLE001 - see the docstring
            self._failed("a job", exc)

    def _job(self, target: str, state: str, queued_for: float | None) -> None:
        if state == "retry":
            self.retries.labels(target).inc()
            return
        self.jobs.labels(target, state).inc()
        if state == "dead":
            self.dead_letters.labels(target).inc()
        if state in ("started", "succeeded", "failed") and queued_for is not None:
            self.dispatch_latency.labels(target).observe(max(0.0, queued_for))
        if state in ("succeeded", "failed"):
            self.build_results.labels(target, state).inc()

    def recovered(self, source: str, reason: str) -> None:
        """One delivery reconcile recovered (dispatch/reconcile.py). Never raises."""
        try:
            self.recovered_deliveries.labels(source, reason).inc()
        except Exception as exc:   # noqa: BLE001 - the recovery is stored already
            self._failed("a recovered delivery", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.failure_log(what, exc)
        self._remake_dir()

    def _remake_dir(self) -> None:
        """The multiprocess directory removed (a cleanup of /dev/shm, say): make it again, so
        that counting resumes and /metrics answers (what was counted before is lost with it)."""
        if self.multiprocess:
            try:
                Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(mode=0o700, parents=True,
                                                                    exist_ok=True)
            except (OSError, KeyError):
                pass

    # -- exposition -------------------------------------------------------------------------

    def render(self, store=None, now=None, *, rules_status: dict | None = None,
               policies=None) -> tuple[bytes, str]:
        """The exposition: counters of every process, then what is read at scrape time (build
        info, the last reload from `rules_status`, processes, jobs in `store`, and the breakers
        of `policies`' targets)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        if self.multiprocess:
            from prometheus_client import multiprocess
            self._remake_dir()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        text = generate_latest(registry)
        text += scrape_time_metrics(rules_status, self.multiprocess)
        if store is not None:
            text += _store_metrics(store, now)
            if policies is not None:
                text += _breaker_metrics(store, now, policies)
        return text, CONTENT_TYPE_LATEST


def _store_metrics(store, now) -> bytes:
    """Jobs by state, the queue depth (waiting jobs only) and the oldest waiting job's age, read
    from the store at scrape time (true across processes and instances)."""
    from prometheus_client.core import GaugeMetricFamily
    try:
        stats = store.queue_stats(now or time.time())
    except Exception:   # the store being down is /readyz's business; keep /metrics answering
        return b""
    jobs = stats.get("jobs") or {}
    by_state = GaugeMetricFamily("bridge_jobs", "Jobs in the store by state", labels=["state"])
    for state, n in jobs.items():
        by_state.add_metric([state], n)
    return families_text([
        by_state,
        GaugeMetricFamily("bridge_queue_depth", "Jobs waiting to be started (state queued, retries "
                          "in their backoff included)", value=jobs.get("queued", 0)),
        GaugeMetricFamily("bridge_oldest_queued_job_age_seconds", "Age of the oldest waiting job",
                          value=stats.get("oldest_queued_age") or 0)])


BREAKER_STATES = ("closed", "open", "half_open")


def _breaker_metrics(store, now, policies) -> bytes:
    """Each breaker's state (policy `breaker:`), 1 on the label of the state it is in."""
    from prometheus_client.core import GaugeMetricFamily
    try:
        states = store.breaker_states(policies, now=now or time.time())
    except Exception:   # as _store_metrics: the store's health is /readyz's business
        return b""
    if not states:
        return b""
    family = GaugeMetricFamily("bridge_target_breaker", "A target's circuit breaker: 1 for the "
                               "state it is in (closed, open, half_open)", labels=["target", "state"])
    for target, current in sorted(states.items()):
        for st in BREAKER_STATES:
            family.add_metric([target, st], 1 if st == current else 0)
    return families_text([family])


def child_exit(server, worker) -> None:
    """gunicorn hook: a dead worker's live gauges must not linger."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
