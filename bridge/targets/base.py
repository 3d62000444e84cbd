"""The target adapter interface: `Target.start(job) -> Run`, `follow(run)`, `cancel(run)`, used only
by the dispatcher.

Input: a `Job` (bridge.jobs: the rendered `run:` request plus its event). Output: a `Run`
naming what the target started, or `TargetUnavailable` (retry) / `TargetRejected` (dead letter).
"""
from __future__ import annotations

from typing import Any, ClassVar

from bridge.jobs import Job, Run


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

    def cancel(self, run: Run) -> bool:
        """Stop a build a newer one of its group superseded (policy `on_newer: cancel`): a run
        as `start`/`follow` returned it, or, for a build still inside `start` in this process,
        `Run(remote_id="", detail={"job_id": N})`. True if the target was asked to stop it (a
        build that already ended is no error); False if this kind cannot cancel. Raises
        `TargetUnavailable` / `TargetRejected` as `start` does."""
        return False

    def ping(self) -> str | None:
        """`/readyz?targets=1`: raise if the target cannot be reached; return None or "ok"."""
        return None

    def check_online(self, runs: list[tuple[str, int, dict]], *, rules_file: str = "rules.yaml") -> list[str]:
        """`cibridge check --online`: given (rule name, line, run) tuples, report problems as
        "rule 'NAME' (<rules_file>:LINE): ..."; kinds with nothing to ask online report none."""
        return []

    def close(self) -> None:
        pass
