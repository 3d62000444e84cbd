"""The optional bridge-reload.path / bridge-reload.service pair: systemd accepts them, the path
watches the rules file the service units load, the service checks the file (the real `bridge
check` command line from the unit) before it reloads the running units, dispatcher before web."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SYSTEMD = ROOT / "systemd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package 'systemd'; .ci/run installs it)")
RELOAD_UNITS = ["bridge-reload.path", "bridge-reload.service"]


def entries(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


def test_the_path_unit_watches_the_rules_the_services_load_and_starts_the_reload():
    path = entries("bridge-reload.path")
    rules = entries("bridge.service")["Environment"]
    assert "BRIDGE_RULES=/etc/bridge/rules.yaml" in rules
    assert path["PathChanged"] == ["/etc/bridge/rules.yaml"]
    assert path["Unit"] == ["bridge-reload.service"]


def test_the_reload_service_checks_first_then_reloads_dispatcher_before_web():
    svc = entries("bridge-reload.service")
    assert svc["Type"] == ["oneshot"] and svc["User"] == ["bridge"]
    assert svc["ExecStartPre"] == ["/opt/bridge/venv/bin/cibridge check --no-secrets /etc/bridge/rules.yaml"]
    assert svc["ExecStart"] == [f"+/bin/systemctl try-reload-or-restart {u}" for u in
                                ("bridge.service", "bridge-dispatcher.service", "bridge-web.service")]
    for unit in ("bridge.service", "bridge-web.service", "bridge-dispatcher.service"):
        # try-reload-or-restart reloads only units that can: each must have ExecReload=.
        assert entries(unit)["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


@pytest.mark.parametrize("good", [True, False])
def test_the_check_the_reload_runs_first_passes_a_good_file_and_stops_a_bad_one(tmp_path, good):
    """The unit's own ExecStartPre= line, with the venv's bridge and a rules file of ours."""
    line = entries("bridge-reload.service")["ExecStartPre"][0].split()
    rules = tmp_path / "rules.yaml"
    rules.write_text("sources:\n  github: {provider: github, secrets: ['${credential:gh}']}\n"
                     "targets:\n  mem: {kind: memory}\nrules:\n  - name: r\n    on: {repo: '**'}\n"
                     "    run: {target: " + ("mem" if good else "nowhere") + "}\n")
    argv = [sys.executable, "-m", "bridge", *line[1:-1], str(rules)]
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    done = run(argv, env=env)   # no credentials here, as in the unit: --no-secrets
    if good:
        assert done.returncode == 0, done.stderr
        assert "OK (1 sources, 1 targets, 1 rules" in done.stdout
    else:
        assert done.returncode == 1
        assert "rules.yaml:8: rule 'r': unknown target 'nowhere'" in done.stderr


@needs_systemd_analyze
def test_systemd_verifies_the_reload_units_and_rates_them_safe(tmp_path):
    prefix = tmp_path / "opt"
    (prefix / "venv" / "bin").mkdir(parents=True)
    program = prefix / "venv" / "bin" / "cibridge"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for name in RELOAD_UNITS:
        (units / name).write_text((SYSTEMD / name).read_text().replace("/opt/bridge/", f"{prefix}/"))
    result = run([SYSTEMD_ANALYZE, "verify", *(str(units / n) for n in RELOAD_UNITS)])
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    result = run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager",
                  str(units / "bridge-reload.service")])
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert m and float(m.group(1)) <= 2.0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr
