"""Process stage: `cibridge web`, gunicorn in this process serving the WSGI app on the rules the
service last accepted.

Input: rules path, state dir, bind address. Output: a running gunicorn; SIGHUP validates
rules.yaml and restarts the workers (a bad file keeps the running rules: config/snapshot.py).
"""
from __future__ import annotations

import gc
import logging
import os

from bridge import logs
from bridge.config.snapshot import (accepted_or_file, load_with_fallback, read_status, snapshot_source,
                                   validate_and_record)
from bridge.errors import ConfigError
from bridge.metrics import Metrics, child_exit, prepare_multiprocess_dir
from bridge.scrape_metrics import register_process
from bridge.service.handover import reloaded
from bridge.service.spread import Spread
from bridge.service.webworker import worker_class
from bridge.web.app import create_app

log = logging.getLogger("bridge.serve")

#: The rules the gunicorn master loaded (at start, and again on each reload before it forks the
#: new workers): a worker forked from it serves them without validating the file once more,
#: as long as they are still the accepted ones (the snapshot's version).
_MASTER_RULES: dict = {}

WEB_DEFAULTS = {
    # 16 threads per worker: a thread holds a request only while the app serves it (the poller
    # reads it whole first, webworker.py), and the more of them reach the store together, the
    # more deliveries share one commit (store/group.py). Measured with bench/load.py at 64
    # connections: 2 x 16 answer 26-39 % more deliveries/s than 2 x 4, for less CPU per delivery
    # in the workers and the dispatcher; 2 x 32 fewer again. Threads start only when needed.
    "workers": 2, "threads": 16, "keepalive": 5, "timeout": 30,
    # Connections a worker holds: a slow or idle one costs a file descriptor and its bytes so
    # far, not a thread (webworker.py), so many more than gunicorn's 1000.
    "worker_connections": 4096,
    "graceful_timeout": 20, "limit_request_line": 8190, "limit_request_fields": 100,
    "limit_request_field_size": 8190, "forwarded_allow_ips": "127.0.0.1", "accesslog": None,
    "errorlog": "-", "loglevel": "warning", "proc_name": "bridge-web", "control_socket_disable": True,
    "logger_class": "bridge.logs.GunicornLogger",
}


def run_web(rules_path, state_dir, bind, *, workers=None, threads=None, config_file=None,
            config=None):
    """gunicorn in this process: our defaults < the gunicorn config file < rules.yaml settings < flags.
    `config`: the rules it starts on (default: the last-good snapshot)."""
    from gunicorn.app.base import Application

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prepare_multiprocess_dir(state_dir)
    register_process("web")   # gunicorn's arbiter runs in this process
    if config is None:
        config = load_with_fallback(rules_path, state_dir)[0]
    _MASTER_RULES["config"] = config
    config.ruleset      # the match index too, built once here and shared by every worker
    logs.apply_settings(config.settings)
    workers = workers or config.settings.workers

    class BridgeWeb(Application):
        def load_config(self):   # no argv parsing: click already did it
            for key, value in WEB_DEFAULTS.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)
            if config_file:
                self.load_config_from_file(config_file)
            self.cfg.set("bind", [bind])
            # gthread that reads each request whole, with deadlines, before a thread serves it:
            # slow clients hold no thread (webworker.py). Not left to the config file.
            self.cfg.set("worker_class", worker_class(config.settings, spread))
            # Our socket (fd://N) is the one to serve on: workers binding their own with
            # SO_REUSEPORT would ignore it.
            self.cfg.set("reuse_port", False)
            if workers:
                self.cfg.set("workers", workers)
            if threads:
                self.cfg.set("threads", threads)
            self.cfg.set("on_reload", lambda arbiter: _on_web_reload(rules_path, state_dir))
            self.cfg.set("pre_fork", lambda arbiter, worker: spread.assign(worker))
            self.cfg.set("child_exit", _child_exit)

        def init(self, parser, opts, args):
            return None

        def load(self):
            return make_app(rules_path, state_dir)

    spread = Spread()     # the workers' connection counts, shared with each worker it forks

    def _child_exit(arbiter, worker):
        spread.release(worker)
        child_exit(arbiter, worker)

    # What the master holds now (libraries, rules) is never collected: the gc then leaves those
    # objects' pages alone, and the forked workers keep sharing them (less memory per worker).
    gc.freeze()
    limit_malloc_arenas()     # inherited by the workers it forks
    BridgeWeb().run()


#: glibc's mallopt() parameter for the most malloc arenas a process may have.
_M_ARENA_MAX = -8
#: Arenas a web worker's threads share.
WEB_ARENAS = 2


def limit_malloc_arenas(arenas: int = WEB_ARENAS) -> bool:
    """Cap this process's malloc arenas (glibc), as `MALLOC_ARENA_MAX` would; True if set.

    glibc gives each new thread an arena of its own, up to eight per core, and an arena keeps
    what its thread freed: with 16 threads a web worker grew from 51 to 73 MiB RSS over 100,000
    deliveries, against 59 MiB with two arenas (`bench/start_bench.py --soak 100000`), and no
    slower (the threads take turns at the GIL anyway). `MALLOC_ARENA_MAX` in the environment,
    the operator's choice, is left as it is; another libc (musl) is left alone."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_ARENA_MAX, arenas) == 1


def _on_web_reload(rules_path, state_dir):
    """gunicorn master, on SIGHUP, before it replaces its workers: they boot on the snapshot,
    which only a valid file replaces, loaded here once (with its secrets read again) and
    inherited by every new worker."""
    logs.setup()
    problems = validate_and_record(rules_path, state_dir)
    version = (read_status(state_dir) or {}).get("version")
    if problems:
        log.error("reload refused: %s is invalid; the web workers keep rules version %s",
                  rules_path, version, extra={"problems": problems[:5]})
    else:
        log.info("reload: web workers restarting with rules version %s", version)
    gc.unfreeze()      # the old rules may be collected now (run_web froze them for the workers)
    _MASTER_RULES.pop("config", None)
    gc.collect()
    try:
        config = reloaded(rules_path, state_dir)     # under `cibridge serve`: the rules it validated
        config.ruleset
        _MASTER_RULES["config"] = config
    except ConfigError:
        pass     # each worker tries (make_app), and says why
    gc.freeze()


def make_app(rules_path, state_dir):
    """The WSGI app of one gunicorn worker: rules (or the last good ones) + its own store engine."""
    logs.setup()
    config, problems = _inherited_rules(state_dir) or accepted_or_file(rules_path, state_dir)
    logs.apply_settings(config.settings)
    if problems:
        log.error("rules.yaml is invalid; serving the last good rules (version %s)", config.version,
                  extra={"problems": problems[:5]})
    register_process("web-worker")
    return create_app(config, state_dir=state_dir, metrics=Metrics())


def _inherited_rules(state_dir):
    """(config, problems) of the master's rules when they are still the accepted ones, else None."""
    config = _MASTER_RULES.get("config")
    source = snapshot_source(state_dir) if config is not None else None
    if source is None or source.get("version") != config.version:
        return None
    status = read_status(state_dir) or {}
    return config, [] if status.get("ok", True) else list(status.get("problems") or [])
