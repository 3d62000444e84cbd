"""Parts of the deployment tests: where deploy/ keeps install.sh, the gunicorn config, the nginx site and
the systemd units; running a command; reading a unit's entries; rendering the units for a prefix."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "install.sh"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
NGINX_CONF = ROOT / "deploy" / "nginx-bridge.conf"
UNIT_NAMES = ["bridge.service", "bridge-web.service", "bridge-dispatcher.service"]
RELOAD_UNITS = ["bridge-reload.path", "bridge-reload.service"]   # optional; installed, not enabled
UNIT_PREFIX = "/opt/bridge/"        # what install.sh rewrites to its --prefix
HEADERS_JSON = ROOT.parent / "shared" / "payloads" / "headers.json"

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package 'systemd'; .ci/run installs it)")


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


def unit_entries(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat: Environment=, SystemCallFilter=)."""
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            entries.setdefault(key, []).append(value)
    return entries


def unit(name: str) -> dict[str, list[str]]:
    return unit_entries((ROOT / "systemd" / name).read_text())


def render_units(prefix: Path, into: Path) -> list[Path]:
    """The units as install.sh writes them for `--prefix prefix`."""
    into.mkdir(parents=True, exist_ok=True)
    out = []
    for name in UNIT_NAMES:
        text = (ROOT / "systemd" / name).read_text().replace(UNIT_PREFIX, f"{prefix}/")
        (into / name).write_text(text)
        out.append(into / name)
    return out


def seconds(span: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", span)
    assert m, span
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)
