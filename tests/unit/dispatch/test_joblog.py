"""The one per-job log adapter: every line about a job (running it or following its build) starts
"job N (rule -> target): " and carries the job's delivery, id, rule and target."""
from __future__ import annotations

import logging

from bridge.dispatch.joblog import JobLog

LOG = "test.bridge.joblog"


def test_a_job_line_names_the_job_and_carries_its_fields(caplog):
    jlog = JobLog(logging.getLogger(LOG), job_id=7, delivery_id="d-1", rule="build 100%", target="ci")
    with caplog.at_level(logging.DEBUG, logger=LOG):
        jlog(logging.WARNING, "transient failure, retry in %.1fs: %s", 2.0, "refused")
    (record,) = caplog.records
    assert record.getMessage() == "job 7 (build 100% -> ci): transient failure, retry in 2.0s: refused"
    assert (record.levelno, record.delivery, record.job, record.rule, record.target) == (
        logging.WARNING, "d-1", 7, "build 100%", "ci")


def test_an_exception_goes_with_the_line(caplog):
    jlog = JobLog(logging.getLogger(LOG), job_id=1, delivery_id="d", rule="r", target="t")
    with caplog.at_level(logging.ERROR, logger=LOG):
        try:
            raise RuntimeError("boom")
        except RuntimeError as exc:
            jlog(logging.ERROR, "failed in the dispatcher: %s", exc, exc_info=exc)
    assert caplog.records[0].exc_info[0] is RuntimeError
