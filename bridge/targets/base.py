"""The target adapter interface: `Target.start(job) -> Run`, used only by the dispatcher.

Input: a `Job` (a stored job row: the rendered `run:` request plus its event). Output: a `Run`
naming what the target started, or `TargetUnavailable` (retry) / `TargetRejected` (dead letter).
"""
from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bridge.events import Event

#: The longest wait a Retry-After header may ask of us (a typo of a server must not park a job).
MAX_RETRY_AFTER = 3600.0
#: A job's request key counting how often an operator had a failed build run again (`bridge
#: retry`): targets with an idempotency key (Jenkins' BRIDGE_DELIVERY, CodeBuild's token) put it
#: in the key, so the new run is not mistaken for the failed one. Never a rule's own key.
RERUN_KEY = "bridge_rerun"


def rerun_suffix(job: "Job") -> str:
    """"" for a job's first run; "-rerun<N>" after the Nth operator retry of a failed build."""
    n = job.request.get(RERUN_KEY) if isinstance(job.request, dict) else None
    return f"-rerun{int(n)}" if n else ""


def retry_after(value: str | None, now=time.time) -> float | None:
    """Seconds an HTTP `Retry-After` asks for (delta-seconds or an HTTP date), capped at
    MAX_RETRY_AFTER; None when absent or unreadable. Jenkins and the git hosts' APIs alike."""
    if not value:
        return None
    try:
        return min(max(0.0, float(value)), MAX_RETRY_AFTER)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        return min(max(0.0, when - now()), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class Job:
    """One unit of work for one target, as the dispatcher claimed it from the store."""
    id: int
    delivery: str               # the host's delivery id (prefixes every log line)
    rule: str
    target: str                 # the target's name in rules.yaml
    request: dict               # the rule's `run:` with every template already rendered
    event: Event
    attempt: int = 1            # 1 on the first try


@dataclass(frozen=True)
class Run:
    """What a target reports back after accepting a job.

    `state` is "started" (the build runs remotely; follow it by `remote_id`), "queued" (accepted,
    no build yet: e.g. a Jenkins queue item), or a final "succeeded" / "failed" for targets that
    finish inside `start` (exec, memory).
    """
    remote_id: str
    url: str = ""
    state: str = "started"
    detail: dict = field(default_factory=dict)


class Target:
    """Base class of every target kind.

    Subclasses set `kind`, and describe their configuration for validation:
    `config_keys` / `run_keys` map each allowed key to True when it is required. Every string
    under `run:` is a template (`${sha}` ...); secret references are allowed in target config.

    `start(job)` must be idempotent where the target allows it (CodeBuild: idempotencyToken
    from `job.id`), must raise only `TargetUnavailable` or `TargetRejected` (translate library
    errors at one choke point, chained `from exc`), and must never put a secret in a message.
    """

    kind: ClassVar[str] = ""
    config_keys: ClassVar[dict[str, bool]] = {}
    run_keys: ClassVar[dict[str, bool]] = {}
    #: `run:` keys that are never templates (exec: the argv and working directory): `bridge
    #: check` refuses a `${...}` there with `literal_message`; `$$` stays a literal `$`.
    literal_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def literal_message(cls, key: str, template: str) -> str:
        return f"{key}: templates are not allowed here ({template!r})"

    def __init__(self, name: str, options: dict[str, Any]):
        self.name = name
        self.options = options

    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        """Extra checks on the target's own options beyond known/required keys."""
        return []

    @classmethod
    def validate_run(cls, run: dict[str, Any]) -> list[str]:
        """Extra checks on a rule's `run:` for this kind beyond known/required keys."""
        return []

    @classmethod
    def with_state_dir(cls, options: dict[str, Any], state_dir: str) -> dict[str, Any]:
        """The options a dispatcher builds this target with, given the (absolute) state
        directory: defaults that depend on it (an exec target's working directory)."""
        return options

    def start(self, job: Job) -> Run:  # pragma: no cover - interface
        raise NotImplementedError

    def follow(self, run: Run) -> Run:
        """Ask the target where a started run is now; final states end the follow."""
        return run

    def ping(self) -> str | None:
        """`/readyz?targets=1`: raise if the target cannot be reached; return None or "ok"."""
        return None

    def check_online(self, runs: list[tuple[str, int, dict]], *, rules_file: str = "rules.yaml") -> list[str]:
        """`cibridge check --online`: given (rule name, line, run) tuples, report problems as
        "rule 'NAME' (<rules_file>:LINE): ..."; kinds with nothing to ask online report none."""
        return []

    def close(self) -> None:
        pass
