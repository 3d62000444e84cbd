"""The exec target: runs a local command (an argv list, no shell) for a job and waits for it.

Input: `Job` whose request has `command` (a literal argv list) and optionally `cwd`, `timeout`,
`env`, `retry_on_exit`; the event's fields arrive as BRIDGE_* environment variables, never in the
argv. Output: `Run` "succeeded" (exit 0) or "failed" (non-zero exit, or timed out), with the exit
code and the last 64 KiB of output; `TargetUnavailable` (retried with backoff) for an exit code
named transient.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Any

from bridge.errors import TargetRejected, TargetUnavailable
from bridge.jobs import Job, Run
from bridge.targets.base import Target

#: Output kept per run: the tail, where a failing build says why.
OUTPUT_LIMIT = 64 * 1024
DEFAULT_TIMEOUT = 3600.0
#: Inherited from the bridge's own environment; nothing else is (no secrets leak into builds).
INHERITED_ENV = ("PATH", "HOME", "LANG")
# After the main process exits, how long background children may keep the output pipe open
# before their process group is killed.
_LINGER = 1.0


class ExecTarget(Target):
    """`kind: exec`. Target options `cwd`, `timeout` (seconds), `env` are defaults for its rules.

    The command runs in its own session (process group). On timeout the group gets SIGTERM, then
    SIGKILL after `term_grace` seconds; processes the command leaves running in the background are
    killed too once it exits. Output (stdout and stderr, merged) is drained continuously and only
    its tail is kept, so a command printing gigabytes costs no memory.
    """

    kind = "exec"
    config_keys = {"kind": True, "cwd": False, "timeout": False, "env": False, "retry_on_exit": False}
    run_keys = {"target": True, "command": True, "cwd": False, "timeout": False, "env": False,
                "retry_on_exit": False}
    #: The argv is literal: payload values reach the command only through its environment
    #: (BRIDGE_* and the rule's `env:`, whose values may be templates).
    literal_keys = ("command", "cwd")

    def __init__(self, name: str, options: dict[str, Any], *, term_grace: float = 5.0):
        super().__init__(name, options)
        self.term_grace = term_grace
        self._running: set[subprocess.Popen] = set()
        self._by_job: dict[int, subprocess.Popen] = {}     # job id -> its running command
        self._cancelled: set[int] = set()                  # pids of commands cancel() stopped
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
        return problems + _check_common(run)

    @classmethod
    def literal_message(cls, key: str, template: str) -> str:
        """Why a template in `command:` or `cwd:` is refused, and the env form to use instead.
        Branch, tag and pusher names are chosen by whoever pushes (git allows `;`, `$(` and
        backquotes in them), and no list of programs can tell which argv a program treats as
        code (`sh -c`, `env sh -c`, `ssh host "..."`, `xargs`, `python3.11 -c`, ...)."""
        if not template.endswith("}"):
            return (f"{key}: {template!r} is an unclosed template, and an exec command takes "
                    "none (write $${ for a literal '${')")
        field = template[2:-1]
        var = field.upper() if field.isidentifier() else "VALUE"
        where, use = ((f"an exec command's argv", f'use "${var}" in a script') if key == "command"
                      else ("an exec command's working directory", f'cd "${var}" in a script'))
        return (f"{key}: templates are not allowed in {where} ({template!r}); pass it as an "
                f"environment variable instead: env: {{{var}: \"{template}\"}} and {use}")

    def start(self, job: Job) -> Run:
        request = job.request
        argv = list(request["command"])
        cwd = request.get("cwd") or self.options.get("cwd") or None
        timeout = float(request.get("timeout") or self.options.get("timeout") or DEFAULT_TIMEOUT)
        env = self.environment(job)
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
            if job.id is not None:
                self._by_job[job.id] = proc
            if self._closed:     # close() ran while we were spawning
                _killpg(proc.pid, signal.SIGKILL)
        started = time.monotonic()
        try:
            tail, total, timed_out = self._collect(proc, timeout)
        finally:
            with self._lock:
                self._running.discard(proc)
                if self._by_job.get(job.id) is proc:
                    del self._by_job[job.id]
                cancelled = proc.pid in self._cancelled
                self._cancelled.discard(proc.pid)
        if self._closed and proc.returncode == -signal.SIGKILL:
            raise TargetUnavailable(f"'{argv[0]}' was stopped: the bridge is shutting down")

        detail = {"exit_code": proc.returncode, "output": tail.decode("utf-8", "replace"),
                  "output_bytes": total, "duration": round(time.monotonic() - started, 3)}
        if timed_out:
            detail["reason"] = f"timed out after {timeout:g}s"
            return Run(remote_id=f"pid-{proc.pid}", state="failed", detail=detail)
        if cancelled:
            detail.update(reason="cancelled: superseded by a newer job of its group", cancelled=True)
            return Run(remote_id=f"pid-{proc.pid}", state="failed", detail=detail)
        if proc.returncode != 0:
            detail["reason"] = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                                else f"exit code {proc.returncode}")
        if proc.returncode in self._transient_codes(request):
            # The command says "not now" (EX_TEMPFAIL and the like): the target's retry policy
            # backs off and tries again, and gives up (dead) after its give_up_after.
            raise TargetUnavailable(f"'{argv[0]}' exited with {proc.returncode}, a transient code "
                                    f"(retry_on_exit){_last_line(detail['output'])}")
        return Run(remote_id=f"pid-{proc.pid}", state="succeeded" if proc.returncode == 0 else "failed",
                   detail=detail)

    def environment(self, job: Job) -> dict[str, str]:
        """The command's whole environment: PATH, HOME, LANG of ours, the target's then the run's
        `env:`, and the BRIDGE_* variables last, so a build can trust them."""
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update({str(k): str(v) for k, v in (self.options.get("env") or {}).items()})
        env.update({str(k): str(v) for k, v in (job.request.get("env") or {}).items()})
        env.update({f"BRIDGE_{k.upper()}": v for k, v in job.event.template_fields().items()})
        env.update({"BRIDGE_RULE": job.rule, "BRIDGE_TARGET": job.target,
                    "BRIDGE_JOB_ID": str(job.id), "BRIDGE_ATTEMPT": str(job.attempt)})
        return env

    def _transient_codes(self, request: dict) -> frozenset:
        """The rule's `retry_on_exit`, else the target's (a rule's [] retries nothing)."""
        codes = request.get("retry_on_exit")
        if codes is None:
            codes = self.options.get("retry_on_exit")
        return frozenset(codes or ())

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

    def cancel(self, run: Run) -> bool:
        """SIGTERM to the process group of a job's command still running here (then SIGKILL
        after `term_grace`, as on timeout). The job's `start` returns a failed run whose detail
        says `cancelled`. False if no command of that job runs in this process."""
        with self._lock:
            proc = self._by_job.get(run.detail.get("job_id"))
            if proc is None:
                return False
            self._cancelled.add(proc.pid)
        threading.Thread(target=self._terminate, args=(proc,), name="exec-cancel", daemon=True).start()
        return True

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


def _last_line(output: str) -> str:
    """': <the output's last non-empty line>' (shortened), or '' when it printed nothing."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return ": " + (last if len(last) <= 200 else last[:199] + "\u2026")


def _check_common(options: dict[str, Any]) -> list[str]:
    problems = []
    if "retry_on_exit" in options:
        codes = options["retry_on_exit"]
        if (not isinstance(codes, list)
                or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 255
                           for c in codes)):
            problems.append(f"retry_on_exit must list exit codes from 1 to 255 that mean 'try "
                            f"again later' (e.g. [75], EX_TEMPFAIL), not {codes!r}")
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
