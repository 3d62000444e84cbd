"""Process stage: `cibridge dispatch`, one dispatcher on the rules the service last accepted.

Input: rules path, state dir. Output: a dispatcher running until SIGTERM/SIGINT (or `stop`);
SIGHUP validates rules.yaml and swaps in its targets, path decider and statuses (a bad file keeps
the running rules: config/snapshot.py).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from bridge import logs
from bridge.config.snapshot import load_with_fallback, validate_and_record
from bridge.dispatch.changes import make_path_decider
from bridge.dispatch.loop import Dispatcher
from bridge.dispatch.reconcile import Periodic
from bridge.dispatch.statuses import Feedback
from bridge.errors import ConfigError
from bridge.metrics import Metrics, use_multiprocess_dir
from bridge.scrape_metrics import register_process
from bridge.service.handover import reloaded
from bridge.service.sigpipe import SignalPipe
from bridge.service.storeopen import open_store_or_exit

log = logging.getLogger("bridge.serve")


def run_dispatcher(rules_path, state_dir, *, concurrency=None, owner=None, stop=None, config=None):
    """Run one dispatcher until SIGTERM/SIGINT (or `stop` is set); SIGHUP reloads rules.
    `config`: the rules it starts on (default: the last-good snapshot)."""
    logs.setup()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        use_multiprocess_dir(state_dir)
    register_process("dispatcher")
    if config is None:
        config = load_with_fallback(rules_path, state_dir)[0]
    logs.apply_settings(config.settings)
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    dispatcher = build_dispatcher(config, state_dir, owner, concurrency)
    stop = stop or threading.Event()
    reloader = Reloader(rules_path, state_dir, dispatcher, config)
    if threading.current_thread() is threading.main_thread():
        hup = threading.Event()   # a SIGHUP not yet handled
        SignalPipe([signal.SIGTERM, signal.SIGINT, signal.SIGHUP]).serve(signal_handler(hup, stop))
        threading.Thread(target=reloader.run, args=(stop, hup), name="reload", daemon=True).start()
    # Recovers missed deliveries every settings.reconcile.interval, on one instance at a time.
    periodic = Periodic(lambda: reloader.config, dispatcher.store, owner, metrics=dispatcher.metrics)
    threading.Thread(target=periodic.loop, args=(stop,), name="reconcile", daemon=True).start()
    log.info("dispatcher %s started (rules version %s)", owner, config.version,
             extra={"rules_file": os.path.abspath(rules_path)})
    dispatcher.run(stop)
    log.info("dispatcher %s stopped", owner)


def build_dispatcher(config, state_dir, owner: str, concurrency=None) -> Dispatcher:
    """A Dispatcher on `config`: its store, targets, path decider and status poster."""
    concurrency = concurrency or config.settings.dispatcher_concurrency
    # One connection per job thread and follow thread, plus the claim loop and the status poster.
    store = open_store_or_exit(config, state_dir,
                               pool_size=concurrency + config.settings.follow.concurrency + 2,
                               background_checkpoints=True)
    return Dispatcher(store, config.build_targets(state_dir), config.retry_policies(), owner=owner,
                      concurrency=concurrency,
                      lease_seconds=config.settings.lease_seconds,
                      poll_interval=config.settings.poll_interval,
                      decide_paths=make_path_decider(state_dir, config),
                      metrics=Metrics(), feedback=Feedback(config),
                      follow=config.settings.follow, policies=config.policies())


def signal_handler(hup: threading.Event, stop: threading.Event):
    """on_signal(signum) for the signal thread: SIGHUP sets `hup`, the others `stop`."""
    def on_signal(signum):
        # On the signal thread, never inside a handler: a second SIGTERM while the first one's
        # stop.set() holds the event's lock would wait for that lock forever on the thread the
        # handler interrupted. Setting an event twice is harmless.
        if signum == signal.SIGHUP:
            hup.set()
        else:
            if not stop.is_set():
                log.info("dispatcher stopping (signal %d)", signum)
            stop.set()
    return on_signal


class Reloader:
    """A dispatcher's rules after each SIGHUP: the file validated and recorded, then the new
    targets, path decider and statuses put in; targets the new rules dropped are carried on."""

    def __init__(self, rules_path, state_dir, dispatcher: Dispatcher, config):
        self.rules_path, self.state_dir, self.dispatcher = rules_path, state_dir, dispatcher
        self.config = config
        self.carried: dict = {}   # target name -> (Target, RetryPolicy) that the rules no longer name

    def run(self, stop: threading.Event, hup: threading.Event) -> None:
        # Its own thread: a reload that takes a while never holds up a stop.
        while not stop.is_set():
            if not hup.wait(0.1):
                continue
            hup.clear()
            try:
                self.reload()
            except Exception:   # noqa: BLE001 - a failed reload must not end reloading
                log.error("reload failed; the dispatcher keeps rules version %s",
                          self.config.version, exc_info=True)

    def reload(self) -> None:
        rules_path, state_dir = self.rules_path, self.state_dir
        # Validated here too: under bridge-dispatcher.service nobody else checks the file first.
        problems = validate_and_record(rules_path, state_dir)
        try:
            # Under `cibridge serve`: the rules it validated and handed over (handover.py).
            new = None if problems else reloaded(rules_path, state_dir)
        except ConfigError as exc:   # a secret went missing since the validation
            problems = exc.problems
        if problems:
            log.error("reload refused: %s is invalid; the dispatcher keeps rules version %s",
                      rules_path, self.config.version, extra={"problems": problems[:5]})
            return
        old, carried = self.config, self.carried
        # Jobs accepted under the old rules may name a target the new ones dropped or renamed:
        # they were acknowledged, so they still run there (until the next restart).
        gone = [name for name in old.targets if name not in new.targets]
        built = old.build_targets(state_dir) if gone else {}
        carried.update({name: (built[name], old.targets[name].retry) for name in gone})
        for name in new.targets:
            carried.pop(name, None)
        self.config = new
        logs.apply_settings(new.settings)
        self.dispatcher.set_targets({**{n: t for n, (t, _) in carried.items()}, **new.build_targets(state_dir)},
                                    {**{n: p for n, (_, p) in carried.items()}, **new.retry_policies()},
                                    new.policies())
        self.dispatcher.decide_paths = make_path_decider(state_dir, new)   # a source's clone_url may change
        self.dispatcher.set_feedback(Feedback(new))   # report: tokens and rules' contexts may change
        log.info("reload: the dispatcher runs rules version %s", new.version,
                 extra={"carried_targets": sorted(carried)} if carried else None)
