"""deploy/install.sh: POSIX sh and bash parse it, help, bad arguments refused, a dry run changes
nothing, and a real install in a sandbox is idempotent."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from helpers.deploy import (GUNICORN_CONF, INSTALL, RELOAD_UNITS, ROOT, SYSTEMD_ANALYZE, UNIT_NAMES,
                            UNIT_PREFIX, run)


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
