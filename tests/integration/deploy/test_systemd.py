"""The systemd units in deploy/: the user, state, config, reload and restart of each, hardening that
keeps what the bridge needs, readiness, `systemd-analyze security` exposure and `verify`."""
from __future__ import annotations

import re

import pytest
from helpers.deploy import (ROOT, SYSTEMD_ANALYZE, UNIT_NAMES, UNIT_PREFIX, needs_systemd_analyze, render_units,
                            run, unit)


# --- systemd units -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", UNIT_NAMES)
def test_unit_runs_the_bridge_as_its_user_with_state_config_reload_and_restart(name):
    u = unit(name)
    assert u["User"] == ["bridge"] and u["Group"] == ["bridge"]
    assert u["StateDirectory"] == ["bridge"]
    # Exec targets without a cwd run here: "/" is read-only under ProtectSystem=strict.
    assert u["WorkingDirectory"] == ["%S/bridge"]
    assert u["ConfigurationDirectory"] == ["bridge"]
    assert u["ExecStart"][0].startswith(UNIT_PREFIX + "venv/bin/cibridge ")
    assert u["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert u["Restart"] == ["on-failure"]
    assert "BRIDGE_RULES=/etc/bridge/rules.yaml" in u["Environment"]
    assert u["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_unit_hardening_keeps_what_the_bridge_needs(name):
    u = unit(name)
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                       ("CapabilityBoundingSet", ""), ("MemoryDenyWriteExecute", "yes")]:
        assert u[key] == [value], key
    assert "@system-service" in u["SystemCallFilter"]
    # Outbound HTTPS/ssh and git subprocesses: no PrivateNetwork, no ban on fork/exec.
    assert set(u["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "PrivateNetwork" not in u
    assert not any("@process" in f or "execve" in f for f in u["SystemCallFilter"])


def test_serve_and_web_signal_readiness_dispatcher_does_not():
    assert unit("bridge.service")["Type"] == ["notify"]
    assert unit("bridge-web.service")["Type"] == ["notify"]
    assert unit("bridge-dispatcher.service")["Type"] == ["exec"]
    assert unit("bridge.service")["ExecStart"] == [UNIT_PREFIX + "venv/bin/cibridge serve"]
    assert unit("bridge-dispatcher.service")["ExecStart"] == [UNIT_PREFIX + "venv/bin/cibridge dispatch"]
    web = unit("bridge-web.service")["ExecStart"][0].split()
    assert web[1:3] == ["web", "--gunicorn-config"] and web[3] == "/etc/bridge/gunicorn.conf.py"
    # The single unit and the split pair must never run at once (same port, same state).
    assert set(unit("bridge.service")["Conflicts"][0].split()) == {
        "bridge-web.service", "bridge-dispatcher.service"}


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNIT_NAMES)
def test_security_exposure_is_at_most_2(name):
    result = run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager",
                  str(ROOT / "systemd" / name)])
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert m, result.stdout + result.stderr
    assert float(m.group(1)) <= 2.0, result.stdout
    # A misspelled setting is only a warning on stderr, and would drop its protection.
    assert result.stderr.strip() == "", result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNIT_NAMES)
def test_verify_passes(name, tmp_path):
    # verify checks that ExecStart's program exists: point the prefix at one that does.
    prefix = tmp_path / "opt"
    (prefix / "venv" / "bin").mkdir(parents=True)
    program = prefix / "venv" / "bin" / "cibridge"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    render_units(prefix, tmp_path / "units")
    result = run([SYSTEMD_ANALYZE, "verify", str(tmp_path / "units" / name)])
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_systemd_analyze
def test_verify_reports_what_the_checks_rely_on(tmp_path):
    """The two checks above can fail: a typo is reported on stderr, a missing program fails."""
    units = render_units(tmp_path / "nowhere", tmp_path / "units")
    result = run([SYSTEMD_ANALYZE, "verify", str(units[0])])
    assert result.returncode != 0 and "is not executable" in result.stderr
    typo = tmp_path / "units" / "bridge.service"
    typo.write_text(typo.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    result = run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(typo)])
    assert "Unknown key" in result.stderr
