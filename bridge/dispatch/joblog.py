"""What the dispatcher says about one job, on both of its paths (running a claimed job, following
its build). Input: a claimed job or follow, and a step's name. Output: log lines prefixed
"job N (rule -> target): " with the job's fields as extras, and the step's commit statuses."""
from __future__ import annotations

import logging

from bridge.dispatch.statuses import Feedback
from bridge.jobs import Job
from bridge.store import ClaimedFollow


class JobLog:
    """The one per-job log adapter: every line about a job names it the same way and carries
    its delivery, job, rule and target (for the JSON log and `deliveries show`)."""

    def __init__(self, log: logging.Logger, *, job_id: int, delivery_id: str, rule: str, target: str):
        self.log = log
        self.job_id, self.rule, self.target = job_id, rule, target
        self.extra = {"delivery": delivery_id, "job": job_id, "rule": rule, "target": target}

    @classmethod
    def of_job(cls, log: logging.Logger, cj: Job) -> JobLog:
        return cls(log, job_id=cj.id, delivery_id=cj.delivery, rule=cj.rule, target=cj.target)

    @classmethod
    def of_follow(cls, log: logging.Logger, cf: ClaimedFollow) -> JobLog:
        return cls.of_job(log, cf.job)

    def __call__(self, level: int, msg: str, *args, exc_info: bool | BaseException = False) -> None:
        self.log.log(level, "job %d (%s -> %s): " + msg, self.job_id, self.rule, self.target, *args,
                     extra=self.extra, exc_info=exc_info)


def step_statuses(feedback: Feedback | None, step: str, job: Job, jlog: JobLog, *args) -> list:
    """The commit status of one step of a job (the `Feedback` builder named `step`); none
    without feedback or when building it fails (logged)."""
    if feedback is None:
        return []
    try:
        return getattr(feedback, step)(job, *args)
    except Exception:   # noqa: BLE001 - a status is never worth losing a job's result
        jlog(logging.ERROR, "cannot build its %s status", step, exc_info=True)
        return []


def result_level(state: str) -> int:
    """A failed build is news at info; a started or succeeded one is detail (debug)."""
    return logging.INFO if state == "failed" else logging.DEBUG


def message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
