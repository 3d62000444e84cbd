"""Process stage: `cibridge serve` supervises `cibridge web` (gunicorn) and `cibridge dispatch` as two children.

Input: rules path, state dir, bind address. Output: running processes on one listening socket the
supervisor binds itself and hands to gunicorn (a busy port is an error at once; the port stays
open while the web child restarts); READY=1 to systemd once its own gunicorn answers /healthz
through that socket. SIGHUP validates rules.yaml and reloads both children (a bad file keeps the
running rules), SIGTERM stops both, a child that dies is restarted on the last-good snapshot.
"""
from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field

from bridge import logs
from bridge.config.load import forget_shared
from bridge.config.snapshot import (LAST_GOOD, SUPERVISED, describe_rules, fallback_refusal, has_snapshot,
                                   load_file, load_with_fallback, read_status, record_good,
                                   validate_record_config, write_status)
from bridge.errors import ConfigError
from bridge.metrics import prepare_multiprocess_dir
from bridge.scrape_metrics import register_process
from bridge.service.handover import CHANNEL, Handover
from bridge.service.listener import BindError, Listener
from bridge.service.sigpipe import SignalPipe

log = logging.getLogger("bridge.serve")


@dataclass
class StartingRules:
    """What a start of `cibridge serve` runs: rules.yaml (text set) or its last good snapshot."""
    config: object
    text: str | None = None
    problems: list[str] = field(default_factory=list)   # the file's, when it runs the snapshot


class Supervisor:
    """Starts `cibridge web` and `cibridge dispatch`, restarts a child that dies, forwards signals."""

    def __init__(self, rules_path, state_dir, bind, *, workers=None, with_dispatcher=True):
        self.rules_path, self.state_dir, self.bind = str(rules_path), str(state_dir), bind
        self.workers = workers
        self.with_dispatcher = with_dispatcher
        self.children: dict[str, subprocess.Popen] = {}
        self.stopping = False
        self.restarts: dict[str, list[float]] = {}
        self.listener: Listener | None = None
        # The accepted rules, validated here once and handed to every child (handover.py).
        self.handover = Handover()

    def argv(self, role):
        base = [sys.executable, "-m", "bridge", role, "--rules", self.rules_path,
                "--state-dir", self.state_dir]
        if role == "web":
            base += ["--bind", self.listener.gunicorn_bind()]
            if self.workers:
                base += ["--workers", str(self.workers)]
        return base

    def start(self, role):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)   # only the supervisor talks to systemd
        env[SUPERVISED] = "1"
        channel = self.handover.channel(role)
        env[CHANNEL] = str(channel.fileno())
        fds = (channel.fileno(),)
        if role == "web":
            self.listener.ensure()
            fds += (self.listener.fileno(),)
        try:
            self.children[role] = subprocess.Popen(self.argv(role), env=env, pass_fds=fds)
        finally:
            channel.close()
        log.info("started %s (pid %d)", role, self.children[role].pid)

    def run(self) -> int:
        """Bind the port, start the children, check the rules and hand them over, supervise;
        the exit code. Nothing is written to the state directory before the port is ours: a
        second instance started by mistake changes nothing of the first one's. The children
        start first and import their code while this process validates the rules, which they
        wait for (handover.py); they are stopped when nothing can start."""
        try:
            self.listener = Listener(self.bind)
        except BindError as exc:
            logs.say(f"bridge: {exc}; nothing started", logging.ERROR)
            return 1
        try:
            return self._serve()
        finally:
            self._stop_waiting_children()
            self.handover.close()       # a child still waiting for the rules exits
            self.listener.close()

    def _serve(self) -> int:
        from gunicorn.systemd import sd_notify

        prepare_multiprocess_dir(self.state_dir)
        register_process("supervisor")
        roles = ["web"] + (["dispatch"] if self.with_dispatcher else [])
        for role in roles:
            self.start(role)            # they wait for the rules on their channel
        starting = self.starting_rules()
        if starting is None:
            return 1
        config = self.put_in_service(starting)
        logs.apply_settings(config.settings)
        self._create_schema(config)     # once, before they open the store
        self.handover.publish(config)
        for role in roles:
            self.handover.send(role)
        version, problems = config.version, starting.problems
        # The children have them now: this process needs their version only.
        starting = config = None
        self._release()
        signals = SignalPipe([signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
        ready = False
        while True:
            if not ready and not self.stopping and self.listener.probe():
                ready = True
                logs.say(f"bridge: listening on {self.listener.url} (rules "
                         f"{describe_rules(self.rules_path, version, problems)}, "
                         f"state {os.path.abspath(self.state_dir)})")
                sd_notify("READY=1\nSTATUS=bridge serving", log)
            if not self.stopping and self._restart_exited(roles) is False:
                return 1
            if self.stopping and all(c.poll() is not None for c in self.children.values()):
                return 0
            for signum in signals.read(0.2):
                if signum == signal.SIGHUP:
                    self.reload()
                else:
                    self.stop()

    def _create_schema(self, config) -> None:
        """The store's schema created (or checked) once, before the children open the store,
        in a child forked for it: the store's code and SQLAlchemy (some 20 MiB) never load into
        this long-lived process. Exits 1 when the store cannot be opened (the child said why)."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                storeopen = importlib.import_module("bridge.service.storeopen")
                storeopen.open_store_or_exit(config, self.state_dir).close()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:       # noqa: BLE001 - said, then exit 1 as the parent would
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(1)

    def _stop_waiting_children(self) -> None:
        """Children that never got rules (nothing valid to start on, the database down) are
        stopped, quietly: they have done nothing but import their code."""
        if self.handover.memfd is not None:
            return
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _restart_exited(self, roles) -> bool:
        """Restart every child that exited; False once one exited five times within a minute."""
        for role in roles:
            child = self.children.get(role)
            if child is None or child.poll() is None:
                continue
            code = child.returncode
            recent = [t for t in self.restarts.get(role, []) if time.monotonic() - t < 60]
            if len(recent) >= 5:
                log.error("%s exited %s five times within a minute; giving up", role, code)
                self.stop()
                return False
            recent.append(time.monotonic())
            self.restarts[role] = recent
            log.error("%s exited with %s; restarting", role, code)
            self.start(role)
        return True

    def starting_rules(self) -> StartingRules | None:
        """The rules this start runs, or None (problems printed); writes nothing. A valid file
        runs. An invalid one (an edit a reload refused, then a restart) leaves its own last good
        version serving, with the problems in the log and /readyz; the last good rules of
        another file never stand in for it, and with nothing accepted yet nothing starts."""
        config, text, problems = load_file(self.rules_path)
        if not problems:
            return StartingRules(config, text)
        refusal = None if not has_snapshot(self.state_dir) else fallback_refusal(
            self.rules_path, self.state_dir)
        if not has_snapshot(self.state_dir) or refusal:
            for p in problems:
                logs.say(p, logging.ERROR)
            if refusal:
                logs.say(f"bridge: {refusal}", logging.ERROR)
            logs.say(f"{self.rules_path}: {len(problems)} problem(s); nothing started", logging.ERROR)
            return None
        try:
            config = load_with_fallback(self.rules_path, self.state_dir)[0]
        except ConfigError as exc:   # the snapshot itself: a secret it names went missing
            for p in exc.problems:
                logs.say(p, logging.ERROR)
            logs.say(f"{self.state_dir}/{LAST_GOOD}: the last good rules fail to load; nothing "
                     "started", logging.ERROR)
            return None
        return StartingRules(config, None, problems)

    def put_in_service(self, starting: StartingRules):
        """Record what starting_rules decided: a valid file becomes the snapshot (every process
        starts at once, so they all get it, as on a reload); an invalid one is reported."""
        config = starting.config
        if not starting.problems:
            record_good(self.state_dir, config, starting.text, self.rules_path)
            return config
        write_status(self.state_dir, ok=False, version=config.version, problems=starting.problems)
        log.error("%s is invalid; starting on the last good rules of %s (version %s): %s",
                  self.rules_path, os.path.abspath(self.rules_path), config.version,
                  "; ".join(starting.problems[:3]), extra={"problems": starting.problems[:20]})
        return config

    @staticmethod
    def _release() -> None:
        """Free what the load of the rules left (10,000 rules: some 60 MiB) once they are
        handed over: the shared pattern lists and checks pin the load's memory otherwise."""
        forget_shared()
        gc.collect()

    def stop(self):
        """Stop listening at once (gunicorn finishes the requests it has), then stop the children."""
        if not self.stopping:
            self.listener.close()
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def reload(self):
        config, problems = validate_record_config(self.rules_path, self.state_dir)
        version = (read_status(self.state_dir) or {}).get("version")
        if problems:
            log.error("reload refused: %s is invalid; rules version %s keeps serving: %s",
                      self.rules_path, version, "; ".join(problems[:3]),
                      extra={"problems": problems[:20]})
            return
        log.info("reload: rules version %s of %s is valid; reloading web workers and dispatcher",
                 version, os.path.abspath(self.rules_path))
        self.handover.publish(config)
        config = None
        # The dispatcher first: jobs for a target new in this version must find it there.
        for role in sorted(self.children, key=lambda r: r != "dispatch"):
            if self.children[role].poll() is None:
                self.handover.send(role)      # before the signal: the child reads it on SIGHUP
                self.children[role].send_signal(signal.SIGHUP)
        self._release()     # while the children reload
