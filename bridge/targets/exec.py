"""The exec target: runs a local command (an argv list, no shell) for a job and waits for it.

Input: `Job` whose request has `command` (argv list) and optionally `cwd`, `timeout`, `env`; the
event's fields arrive as BRIDGE_* environment variables. Output: `Run` "succeeded" (exit 0) or
"failed" (non-zero exit, or timed out), with the exit code and the last 64 KiB of output.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Any

from ..errors import TargetRejected, TargetUnavailable
from .base import Job, Run, Target

#: Output kept per run: the tail, where a failing build says why.
OUTPUT_LIMIT = 64 * 1024
DEFAULT_TIMEOUT = 3600.0
#: Inherited from the bridge's own environment; nothing else is (no secrets leak into builds).
INHERITED_ENV = ("PATH", "HOME", "LANG")
# After the main process exits, how long background children may keep the output pipe open
# before their process group is killed.
_LINGER = 1.0


#: Programs that interpret their arguments as code (templates in their argv are refused).
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh", "busybox",
                    "python", "python3", "perl", "ruby", "node"})


class ExecTarget(Target):
    """`kind: exec`. Target options `cwd`, `timeout` (seconds), `env` are defaults for its rules.

    The command runs in its own session (process group). On timeout the group gets SIGTERM, then
    SIGKILL after `term_grace` seconds; processes the command leaves running in the background are
    killed too once it exits. Output (stdout and stderr, merged) is drained continuously and only
    its tail is kept, so a command printing gigabytes costs no memory.
    """

    kind = "exec"
    config_keys = {"kind": True, "cwd": False, "timeout": False, "env": False}
    run_keys = {"target": True, "command": True, "cwd": False, "timeout": False, "env": False}

    def __init__(self, name: str, options: dict[str, Any], *, term_grace: float = 5.0):
        super().__init__(name, options)
        self.term_grace = term_grace
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        return _check_common(options)

    @classmethod
    def with_state_dir(cls, options: dict[str, Any], state_dir: str) -> dict[str, Any]:
        """No `cwd:` in the rule or the target: the state directory, writable under the systemd
        units' sandbox (the dispatcher's own working directory may be "/", read-only there)."""
        return {**options, "cwd": options.get("cwd") or state_dir}

    @classmethod
    def validate_run(cls, run: dict[str, Any]) -> list[str]:
        problems = []
        command = run.get("command")
        if (not isinstance(command, list) or not command
                or not all(isinstance(a, str) for a in command)):
            problems.append("command must be a non-empty list of strings (an argv list; no shell)")
        elif not command[0]:
            problems.append("command[0] (the program) must not be empty")
        elif os.path.basename(command[0]) in SHELLS and any("${" in a for a in command[1:]):
            # Branch, tag and pusher names are chosen by whoever pushes and may hold ; $( ` ...
            problems.append("command runs a shell, so a template like ${branch} in its arguments "
                            "could inject commands (git allows ';' and '$(' in ref names): use the "
                            "environment variables the exec target sets instead, e.g. \"$BRIDGE_BRANCH\"")
        return problems + _check_common(run)

    def start(self, job: Job) -> Run:
        request = job.request
        argv = list(request["command"])
        cwd = request.get("cwd") or self.options.get("cwd") or None
        timeout = float(request.get("timeout") or self.options.get("timeout") or DEFAULT_TIMEOUT)
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update({str(k): str(v) for k, v in (self.options.get("env") or {}).items()})
        env.update({str(k): str(v) for k, v in (request.get("env") or {}).items()})
        # Set last, so a build can trust them.
        env.update({f"BRIDGE_{k.upper()}": v for k, v in job.event.template_fields().items()})
        env.update({"BRIDGE_RULE": job.rule, "BRIDGE_TARGET": job.target,
                    "BRIDGE_JOB_ID": str(job.id), "BRIDGE_ATTEMPT": str(job.attempt)})

        if self._closed:
            raise TargetUnavailable(f"target '{self.name}' is shutting down")
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        except (FileNotFoundError, NotADirectoryError) as exc:
            if cwd and exc.filename == cwd:
                raise TargetRejected(f"working directory '{cwd}' does not exist") from exc
            raise TargetRejected(f"command '{argv[0]}' not found") from exc
        except PermissionError as exc:
            raise TargetRejected(f"command '{argv[0]}' is not executable "
                                 f"(or '{cwd}' is not accessible)") from exc
        except OSError as exc:   # out of processes or memory: may work later
            raise TargetUnavailable(f"cannot start '{argv[0]}': {exc.strerror}") from exc
        with self._lock:
            self._running.add(proc)
            if self._closed:     # close() ran while we were spawning
                _killpg(proc.pid, signal.SIGKILL)
        started = time.monotonic()
        try:
            tail, total, timed_out = self._collect(proc, timeout)
        finally:
            with self._lock:
                self._running.discard(proc)
        if self._closed and proc.returncode == -signal.SIGKILL:
            raise TargetUnavailable(f"'{argv[0]}' was stopped: the bridge is shutting down")

        detail = {"exit_code": proc.returncode, "output": tail.decode("utf-8", "replace"),
                  "output_bytes": total, "duration": round(time.monotonic() - started, 3)}
        if timed_out:
            detail["reason"] = f"timed out after {timeout:g}s"
            return Run(remote_id=f"pid-{proc.pid}", state="failed", detail=detail)
        if proc.returncode != 0:
            detail["reason"] = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                                else f"exit code {proc.returncode}")
        return Run(remote_id=f"pid-{proc.pid}", state="succeeded" if proc.returncode == 0 else "failed",
                   detail=detail)

    def _collect(self, proc: subprocess.Popen, timeout: float) -> tuple[bytes, int, bool]:
        """Drain the output until EOF, keeping the tail; enforce the timeout on the whole group."""
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        buf = bytearray()
        total = 0
        deadline = time.monotonic() + timeout
        exited_at = None
        timed_out = False
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if not timed_out and now >= deadline:
                    timed_out = True
                    self._terminate(proc)
                    exited_at = time.monotonic()   # only the drain of what is left remains
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > _LINGER:
                    _killpg(proc.pid, signal.SIGKILL)   # background leftovers holding the pipe
                    break
                limit = deadline if exited_at is None else exited_at + _LINGER
                if not sel.select(max(0.0, min(limit - now, 0.5))):
                    continue
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                total += len(chunk)
                buf += chunk
                if len(buf) > 2 * OUTPUT_LIMIT:
                    del buf[:-OUTPUT_LIMIT]
        proc.stdout.close()
        if proc.poll() is None:
            # EOF while the main process still runs (it closed its output): wait for it, in time.
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
                self._terminate(proc)
        _killpg(proc.pid, signal.SIGKILL)
        return bytes(buf[-OUTPUT_LIMIT:]), total, timed_out

    def _terminate(self, proc: subprocess.Popen) -> None:
        _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.term_grace)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        """Shutdown: kill every running command; their jobs raise TargetUnavailable (retried)."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for proc in running:
            _killpg(proc.pid, signal.SIGKILL)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _check_common(options: dict[str, Any]) -> list[str]:
    problems = []
    if "cwd" in options and not isinstance(options["cwd"], str):
        problems.append("cwd must be a path (a string)")
    timeout = options.get("timeout")
    if "timeout" in options and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                 or timeout <= 0):
        problems.append(f"timeout must be a positive number of seconds, not {timeout!r}")
    env = options.get("env")
    if "env" in options and (not isinstance(env, dict)
                             or not all(isinstance(k, str) and k for k in env)
                             or not all(isinstance(v, (str, int, float)) for v in env.values())):
        problems.append("env must map variable names to strings")
    return problems
