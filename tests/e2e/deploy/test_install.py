"""Tests for deployment: the systemd/ units and deploy/ (install.sh, gunicorn and nginx configs).

Input: those files, run through the real tools (systemd-analyze, sh, the bridge's own gunicorn,
nginx when installed). Output: pass/fail; nothing here changes the host (install.sh runs for real
only inside a private mount namespace).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import runpy
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]
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


# --- deploy/gunicorn.conf.py -------------------------------------------------------------------

def gunicorn_settings() -> dict:
    """The file's settings as gunicorn reads them: module globals that name a setting."""
    namespace = runpy.run_path(str(GUNICORN_CONF))
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not callable(v) and k != "os"}


def test_gunicorn_config_names_only_real_settings_with_valid_values():
    from gunicorn.config import Config
    cfg = Config()
    settings = gunicorn_settings()
    # gunicorn silently ignores an unknown name in a config file: a typo would go unnoticed.
    unknown = sorted(set(settings) - set(cfg.settings))
    assert not unknown, unknown
    for key, value in settings.items():
        cfg.set(key, value)          # gunicorn's own validators
    assert cfg.forwarded_allow_ips == ["127.0.0.1"]
    assert cfg.proxy_allow_ips == ["127.0.0.1"]
    assert cfg.forwarder_headers == []
    assert cfg.secure_scheme_headers == {"X-FORWARDED-PROTO": "https"}
    assert cfg.control_socket_disable is True
    assert 2 <= cfg.workers <= 8


def test_gunicorn_timeouts_fit_the_git_hosts_and_systemd():
    s = gunicorn_settings()
    # The hosts give up after 10 s: a worker must be allowed that long before it is killed.
    assert s["timeout"] > 10
    # A stop or reload lets requests finish before systemd's own deadline kills everything.
    for name in UNIT_NAMES:
        assert s["graceful_timeout"] < seconds(unit(name)["TimeoutStopSec"][0]), name


def test_gunicorn_request_limits_admit_real_deliveries():
    s = gunicorn_settings()
    assert 0 < s["limit_request_line"] <= 8190
    assert 0 < s["limit_request_field_size"] <= 8190
    assert 0 < s["limit_request_fields"] <= 100
    if HEADERS_JSON.exists():
        deliveries = [h for h in json.loads(HEADERS_JSON.read_text()).values() if isinstance(h, dict)]
        assert deliveries
        # Room for the host's headers plus what nginx and the client add (Host,
        # Content-Length, X-Forwarded-*, ...).
        assert max(len(h) for h in deliveries) + 12 <= s["limit_request_fields"]
        assert max(len(k) + len(str(v)) + 2 for h in deliveries for k, v in h.items()) \
            < s["limit_request_field_size"]


def test_gunicorn_workers_follow_web_concurrency_or_the_cpus(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert gunicorn_settings()["workers"] == 3
    monkeypatch.delenv("WEB_CONCURRENCY")
    assert gunicorn_settings()["workers"] == max(2, min(len(os.sched_getaffinity(0)), 8))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bridge_web_runs_with_the_gunicorn_config(tmp_path, write_rules):
    """The real `cibridge web --gunicorn-config deploy/gunicorn.conf.py`, on 127.0.0.1."""
    rules = write_rules()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "web", "--rules", str(rules),
         "--state-dir", str(tmp_path / "state"), "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--gunicorn-config", str(GUNICORN_CONF)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                answer = requests.get(url + "/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "cibridge web did not answer"
                time.sleep(0.1)
        assert answer.status_code == 200
        # The file's limits (50 fields, 2048-byte request line; gunicorn's own are 100 and 4094)
        # are in force.
        many = {f"X-Filler-{i}": "x" for i in range(60)}
        assert requests.get(url + "/healthz", headers=many, timeout=5).status_code in (400, 431)
        assert requests.get(url + "/healthz", headers=dict(list(many.items())[:20]),
                            timeout=5).status_code == 200
        assert requests.get(url + "/" + "a" * 3000, timeout=5).status_code in (400, 414)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --- deploy/nginx-bridge.conf ------------------------------------------------------------------

def nginx_directives(text: str) -> list[tuple[tuple[str, ...], str]]:
    """(enclosing block headers, directive) for every directive of an nginx file."""
    out, stack = [], []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            stack.append(" ".join(line[:-1].split()))
        elif line == "}":
            stack.pop()
        else:
            out.append((tuple(stack), line.rstrip(";")))
    assert not stack, "unbalanced braces"
    return out


def nginx_size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    assert m, value
    return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]


def test_nginx_body_cap_is_the_bridges():
    from bridge.config.load import Settings
    caps = [d.split()[1] for _, d in nginx_directives(NGINX_CONF.read_text())
            if d.startswith("client_max_body_size ")]
    assert caps and all(nginx_size(c) == Settings().max_body_bytes for c in caps), caps


def test_nginx_passes_only_hooks_and_healthz_to_the_local_bridge():
    directives = nginx_directives(NGINX_CONF.read_text())
    proxied = {blocks[-1]: d.split()[1] for blocks, d in directives if d.startswith("proxy_pass ")}
    bind = next(e.split("=", 1)[1] for e in unit("bridge.service")["Environment"]
                if e.startswith("BRIDGE_BIND="))
    assert proxied == {"location /hooks/": f"http://{bind}", "location = /healthz": f"http://{bind}"}
    # Everything else (/metrics, /readyz, delivery listings) ends at nginx.
    catch_all = [d for blocks, d in directives
                 if blocks == ("server", "location /") and d.startswith("return ")]
    assert "return 404" in catch_all
    assert not any("metrics" in " ".join(blocks) or "readyz" in " ".join(blocks)
                   for blocks, _ in directives)
    hooks = [d for blocks, d in directives if blocks[-1:] == ("location /hooks/",)]
    assert "proxy_set_header X-Forwarded-For $remote_addr" in hooks      # overwritten, not appended
    assert "proxy_set_header X-Forwarded-Proto $scheme" in hooks
    tls = [d for blocks, d in directives if blocks == ("server",)]
    assert "listen 443 ssl" in tls and any(d.startswith("ssl_certificate ") for d in tls)


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                    reason="nginx (or openssl) is not installed; the config is checked by parsing only")
def test_nginx_accepts_the_site(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=bridge.example.com", "-keyout", str(key), "-out", str(cert)])
    assert made.returncode == 0, made.stderr
    site = (NGINX_CONF.read_text()
            .replace("/etc/letsencrypt/live/bridge.example.com/fullchain.pem", str(cert))
            .replace("/etc/letsencrypt/live/bridge.example.com/privkey.pem", str(key))
            .replace("/var/log/nginx/", f"{tmp_path}/"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  include {tmp_path}/site.conf;\n}}\n")
    result = run(["nginx", "-t", "-e", "stderr", "-p", str(tmp_path),
                  "-c", str(tmp_path / "nginx.conf")])
    assert result.returncode == 0, result.stderr


# --- deploy/install.sh -------------------------------------------------------------------------

def test_install_script_parses_as_posix_sh_and_bash():
    for shell in ("sh", "bash"):
        result = run([shell, "-n", str(INSTALL)])
        assert result.returncode == 0, (shell, result.stderr)
    assert INSTALL.read_text().startswith("#!/bin/sh\n")
    assert "set -eu" in INSTALL.read_text()


def test_install_help():
    result = run(["sh", str(INSTALL), "--help"])
    assert result.returncode == 0, result.stderr
    for word in ("Usage:", "--prefix", "--dry-run", "--from", "daemon-reload"):
        assert word in result.stdout


@pytest.mark.parametrize("argv, code, message", [
    (["--bogus"], 2, "unknown argument: --bogus"),
    (["--prefix", "relative/dir", "--dry-run"], 1, "must be an absolute path"),
    (["--prefix"], 1, "--prefix needs a value"),
    (["--prefix", "/home/admin/bridge", "--dry-run"], 1, "ProtectHome"),
    (["--from", "/nonexistent.whl", "--dry-run"], 1, "no such file"),
])
def test_install_refuses_bad_arguments(argv, code, message):
    result = run(["sh", str(INSTALL), *argv])
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr


def snapshot(paths) -> dict:
    """Everything a run could touch, by path: type, mode, owner, size, mtime, content hash."""
    seen = {}
    for top in paths:
        top = Path(top)
        for path in [top, *(sorted(top.rglob("*")) if top.is_dir() else [])]:
            try:
                st = path.lstat()
            except FileNotFoundError:
                seen[str(path)] = None
                continue
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            except PermissionError:     # /etc/shadow when not root: its stat still counts
                digest = None
            seen[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, digest)
    return seen


def test_install_dry_run_changes_nothing(tmp_path):
    prefix = tmp_path / "opt" / "bridge"
    watched = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/bridge",
               "/var/lib/bridge", *(f"/etc/systemd/system/{n}" for n in UNIT_NAMES),
               tmp_path, ROOT / "build", ROOT / "dist"]
    before = snapshot(watched)
    result = run(["sh", str(INSTALL), "--dry-run", "--prefix", str(prefix)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(watched) == before
    assert not prefix.exists()
    out = result.stdout
    assert "dry run: nothing is changed" in out
    # It says what it would do, with the prefix applied.
    assert f"+ /usr/bin/python3 -m venv {prefix}/venv" in out
    assert f"+ {prefix}/venv/bin/pip" in out
    # The locked dependencies, hash-checked, first; then the bridge alone.
    locked = out.index(f"install --quiet --root-user-action=ignore --require-hashes -r "
                       f"{ROOT}/requirements/base.lock")
    assert locked < out.index(f"install --quiet --root-user-action=ignore --no-deps {ROOT}\n")
    postgres = run(["sh", str(INSTALL), "--dry-run", "--postgres", "--prefix", str(prefix)])
    assert f"--require-hashes -r {ROOT}/requirements/postgres.lock" in postgres.stdout
    for name in UNIT_NAMES + RELOAD_UNITS:
        assert (f"+ write /etc/systemd/system/{name}" in out
                or f"ok: /etc/systemd/system/{name}" in out), out


def standin_wheel(directory: Path, dist: str = "bridge") -> Path:
    """A wheel named bridge whose `bridge` script only prints: installs offline, no dependencies
    (or, with another `dist`, a module-only wheel to stand in for a locked dependency).

    The real wheel's dependencies come from PyPI; this test is about the installer, not pip.
    """
    files = {
        f"{dist}_standin.py": "def main():\n    print('bridge stand-in')\n",
        f"{dist}-0.0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n",
        f"{dist}-0.0.1.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: test_deploy\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if dist == "bridge":
        files["bridge-0.0.1.dist-info/entry_points.txt"] = \
            "[console_scripts]\ncibridge = bridge_standin:main\n"
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}-0.0.1.dist-info/RECORD,,")
    files[f"{dist}-0.0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{dist}-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


def can_sandbox() -> str | None:
    """Why install.sh cannot run for real here, or None."""
    if os.geteuid() != 0:
        return "needs root (useradd, chown) inside the sandbox"
    if shutil.which("unshare") is None:
        return "no unshare (util-linux)"
    probe = run(["unshare", "--mount", "--propagation", "private", "true"])
    if probe.returncode != 0:
        return f"cannot make a mount namespace here: {probe.stderr.strip()}"
    return None


def test_install_for_real_in_a_sandbox_is_idempotent(tmp_path):
    """install.sh run twice as root on private copies of /etc, /var and /run: the host is untouched."""
    reason = can_sandbox()
    if reason:
        pytest.skip(reason)
    etc, var, prefix = tmp_path / "etc", tmp_path / "var", tmp_path / "opt"
    shutil.copytree("/etc", etc, symlinks=True)
    for leftover in ["bridge", *(f"systemd/system/{n}" for n in UNIT_NAMES)]:
        p = etc / leftover
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    (var / "log").mkdir(parents=True)
    (var / "mail").mkdir()
    wheel = standin_wheel(tmp_path)
    # The lock: one stand-in dependency, pinned with its hash, found offline beside the wheel.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    dep = standin_wheel(wheels, "bridge_locked_dep")
    lock = tmp_path / "test.lock"
    lock.write_text(f"bridge-locked-dep==0.0.1 \\\n    --hash=sha256:"
                    f"{hashlib.sha256(dep.read_bytes()).hexdigest()}\n")
    script = (f"mount --bind {etc} /etc && mount --bind {var} /var && "
              f"mount -t tmpfs tmpfs /run && exec sh {INSTALL} --prefix {prefix} --from {wheel} "
              f"--lock {lock}")
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": str(tmp_path),
           "PIP_NO_INDEX": "1", "PIP_NO_CACHE_DIR": "1", "PIP_FIND_LINKS": str(wheels),
           "LC_ALL": "C.UTF-8"}

    def install():
        result = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    first = install()
    users = {line.split(":")[0]: line.split(":") for line in (etc / "passwd").read_text().splitlines()}
    assert users["bridge"][5:] == ["/var/lib/bridge", "/usr/sbin/nologin"]
    uid, gid = int(users["bridge"][2]), int(users["bridge"][3])
    state = (var / "lib" / "bridge").stat()
    assert (state.st_mode & 0o777, state.st_uid, state.st_gid) == (0o700, uid, gid)
    creds = (etc / "bridge" / "credentials").stat()
    assert (creds.st_mode & 0o777, creds.st_uid, creds.st_gid) == (0o750, 0, gid)
    assert (etc / "bridge" / "gunicorn.conf.py").read_bytes() == GUNICORN_CONF.read_bytes()
    assert not (etc / "bridge" / "rules.yaml").exists()       # the admin's to write
    assert list(prefix.glob("venv/lib/python3*/site-packages/bridge_locked_dep-0.0.1.dist-info"))
    for name in UNIT_NAMES + RELOAD_UNITS:
        installed = (etc / "systemd" / "system" / name).read_text()
        assert installed == (ROOT / "systemd" / name).read_text().replace(UNIT_PREFIX, f"{prefix}/")
    assert run([str(prefix / "venv" / "bin" / "cibridge")]).stdout == "bridge stand-in\n"
    assert "skipped: systemctl daemon-reload" in first

    units_before = snapshot([etc / "systemd" / "system", etc / "bridge", etc / "passwd"])
    second = install()
    changes = [line for line in second.splitlines() if line.startswith("+ ")]
    assert all("/venv/bin/pip " in line for line in changes), changes   # only pip runs again
    assert f"ok: {prefix}/venv" in second and "ok: user bridge" in second
    assert snapshot([etc / "systemd" / "system", etc / "bridge", etc / "passwd"]) == units_before

    if SYSTEMD_ANALYZE:
        installed = [str(etc / "systemd" / "system" / n) for n in UNIT_NAMES + RELOAD_UNITS]
        result = run([SYSTEMD_ANALYZE, "verify", *installed])
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
