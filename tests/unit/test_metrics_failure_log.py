"""Metrics that fail never fail a delivery or a job: the writes of a real multiprocess Metrics
whose directory was removed, the rate-limited log of such failures, and the session cleanup of
metric directories that must leave a developer's running bridge alone."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from bridge.metrics import _FailureLog, shm_metrics_dir
from helpers.process import ROOT


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_counts_into_a_removed_directory_never_raise_are_logged_once_and_resume(tmp_path):
    """A process's first value of a kind opens its file in the directory: with the directory
    removed (a cleanup of /dev/shm), that raises; the count is lost, never the caller's work."""
    # prometheus-client picks its multiprocess mode when first imported: a process of its own.
    mdir = tmp_path / "metrics"
    mdir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mdir)}
    done = run_python("""
        import json, logging, os, shutil, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(levelname)s %(message)s")
        from bridge.metrics import Metrics
        m = Metrics()
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        m.delivery("github", 202, "accepted", 0.01, ["build"])     # fails: not counted
        m.delivery("github", 202, "accepted", 0.01, ["build"])
        m.delivery("github", 401, "refused", 0.01)
        m.job("ci", "succeeded", queued_for=0.5)
        print(json.dumps({"render": m.render()[0].decode()}))
    """, env)
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("LOG ERROR")]
    assert len(errors) == 1, done.stderr                   # once, not once per count
    assert "cannot count a delivery in the metrics (FileNotFoundError" in errors[0]
    assert mdir.is_dir()                                   # made again for later counts
    text = json.loads(done.stdout)["render"]
    assert 'bridge_deliveries_total{outcome="accepted",source="github",status="202"} 1.0' in text
    assert 'bridge_sender_consecutive_errors{source="github"} 1.0' in text
    assert 'bridge_job_outcomes_total{state="succeeded",target="ci"} 1.0' in text


def test_metrics_page_answers_with_its_directory_removed(tmp_path):
    mdir = tmp_path / "metrics"
    mdir.mkdir()
    done = run_python("""
        import os, shutil
        from bridge.metrics import Metrics
        m = Metrics()
        m.job("ci", "succeeded")
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        print(m.render()[0].decode())
    """, {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mdir)})
    # No 500 on /metrics; what was counted is lost with the directory.
    assert done.returncode == 0, done.stderr
    assert "bridge_job_outcomes_total{" not in done.stdout and mdir.is_dir()


def test_failure_log_reports_once_per_interval_with_what_it_left_out(caplog):
    clock = [100.0]
    failed = _FailureLog(interval=60.0, clock=lambda: clock[0])
    with caplog.at_level(logging.ERROR, logger="bridge.metrics"):
        for _ in range(5):
            failed("a delivery", FileNotFoundError(2, "No such file or directory"))
        clock[0] += 61
        failed("a job", OSError(28, "No space left on device"))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("cannot count a delivery in the metrics (FileNotFoundError")
    assert "a job" in messages[1] and messages[1].endswith("; 4 more failed since the last report")


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_session_cleanup_removes_only_the_metric_directories_of_bridges_the_tests_started(tmp_path):
    """A pytest session of its own, with this suite's conftest: during it a bridge of the tests
    (state under the session's temporary directory) and a developer's bridge (state elsewhere)
    both make their /dev/shm directory; only the first is gone afterwards."""
    outside = Path("/tmp") / f"bridge-dev-state-{uuid.uuid4().hex[:8]}"   # not under any basetemp
    developers = shm_metrics_dir(outside)
    record = tmp_path / "made.json"
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(f"""
        import json
        from pathlib import Path
        from bridge.metrics import shm_metrics_dir

        def test_two_bridges_make_their_directories(tmp_path):
            (tmp_path / "var").mkdir()          # a bridge makes its state directory
            ours = shm_metrics_dir(tmp_path / "var")
            ours.mkdir()
            Path({str(developers)!r}).mkdir()
            Path({str(record)!r}).write_text(json.dumps([str(ours)]))
    """), encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
             "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "basetemp"),
             str(tmp_path / "test_inner.py")],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT / "tests") + os.pathsep + str(ROOT)},
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        (ours,) = json.loads(record.read_text())
        assert not Path(ours).exists()          # the tests' bridge: removed
        assert developers.is_dir()              # the developer's bridge: left alone
    finally:
        if developers.is_dir():
            developers.rmdir()
