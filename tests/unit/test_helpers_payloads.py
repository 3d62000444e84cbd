"""The test helpers themselves: without shared/payloads, tests on real payloads skip with one
message (a fresh clone without shared/ must not show dozens of FileNotFoundErrors).

Input: pytest run in a subprocess on a few test files, BRIDGE_SHARED_DIR pointing to an empty
directory. Output: assertions on its exit status and summary.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_without_shared_payloads_the_payload_tests_skip_with_one_message(tmp_path):
    empty = tmp_path / "shared"
    empty.mkdir()
    env = {**os.environ, "BRIDGE_SHARED_DIR": str(empty)}
    # A parametrize over payload_files, payloads read inside tests, and a module that reads one
    # at collection (test_gitlab_system_hook).
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/integration/web/test_ingress.py", "tests/integration/web/test_gitlab_system_hook.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "FileNotFoundError" not in out and "error" not in out.lower().split("short test summary")[-1]
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, out
    assert f"real payloads not found: {empty / 'payloads'} has no headers.json" in skipped[0]
    assert "BRIDGE_SHARED_DIR" in skipped[0]
    assert " passed" in out                 # the tests that need no payload still ran
