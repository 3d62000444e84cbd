"""Packaging: setup.cfg's metadata and floors, the hashed dependency locks and how `make`,
install.sh and .ci/run use them, the single-sourced version, the `postgres` extra (and the
message when it is missing)."""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

import bridge

ROOT = Path(__file__).resolve().parents[3]
LOCKS = ROOT / "requirements"


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def requirements(text: str) -> list[Requirement]:
    return [Requirement(line) for line in text.strip().splitlines() if line.strip()
            and not line.strip().startswith("#")]


def install_requires() -> list[Requirement]:
    return requirements(setup_cfg()["options"]["install_requires"])


def extra(name: str) -> list[Requirement]:
    return requirements(setup_cfg()["options.extras_require"][name])


def lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """{normalized name: (version, [hashes])} of a pip-compile lock file."""
    text = (LOCKS / f"{name}.lock").read_text()
    out = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text):
        entry = "\n".join(l for l in entry.splitlines() if not l.lstrip().startswith("#"))
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", entry.strip())
        if not m:
            continue
        out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = (
            m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return out


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_floors_direct_imports_and_the_postgres_extra():
    base = {norm(r.name): r for r in install_requires()}
    # >= 23 (scanners), and >= 27: the slow-client worker (webworker.py) builds on its gthread
    assert not base["gunicorn"].specifier.contains("26.9") and base["gunicorn"].specifier.contains("27.0")
    assert base["requests"].specifier.contains("2.32.4") and not base["requests"].specifier.contains("2.32.3")
    for imported in ("click", "werkzeug", "flask", "botocore", "boto3", "pyyaml", "sqlalchemy"):
        assert imported in base, imported            # imported by bridge/ directly
    assert "psycopg" not in base                     # SQLite needs nothing more
    assert [(norm(r.name), r.extras) for r in extra("postgres")] == [("psycopg", {"binary"})]
    assert "jsonschema" in {norm(r.name) for r in extra("test")}


def test_metadata_license_classifiers_and_one_version():
    meta = setup_cfg()["metadata"]
    assert meta["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    classifiers = meta["classifiers"].split("\n")
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert meta["version"] == "attr: bridge.__version__"
    assert installed_version("bridge") == bridge.__version__
    for flag in ("--version", "-V"):
        out = subprocess.run([sys.executable, "-m", "bridge", flag], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout == f"cibridge, version {bridge.__version__}\n"


def test_every_lock_pins_every_dependency_with_hashes_and_they_agree():
    locks = {name: lock(name) for name in ("base", "postgres", "test")}
    for name, pins in locks.items():
        assert pins, name
        for package, (_, hashes) in pins.items():
            assert hashes, f"{name}.lock: {package} has no hash"
    wanted = {"base": install_requires(), "postgres": install_requires() + extra("postgres"),
              "test": install_requires() + extra("postgres") + extra("test")}
    for name, reqs in wanted.items():
        for req in reqs:
            pinned = locks[name].get(norm(req.name))
            assert pinned, f"{req.name} is not in {name}.lock: run `make lock`"
            assert req.specifier.contains(Version(pinned[0]), prereleases=True), (name, req, pinned)
    assert "psycopg" not in locks["base"] and "psycopg-binary" in locks["postgres"]
    assert "pytest" not in locks["postgres"]
    for package, pin in locks["base"].items():       # one version of a package everywhere
        assert locks["postgres"][package] == pin == locks["test"][package], package


def make_n(target: str) -> str:
    out = subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent-venv"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_installs_from_the_lock_with_hashes_then_the_project_without_deps_and_says_so():
    out = make_n("venv")
    locked = out.index("install --progress-bar off --require-hashes -r requirements/test.lock")
    assert locked < out.index("install --progress-bar off --no-deps -e .")
    assert " -q" not in out and "--quiet" not in out            # pip shows each package
    assert len(re.findall(r"echo \"bridge: \[\d/3\]", out)) == 3    # and a line per step
    lock_out = make_n("lock")
    assert "--generate-hashes" in lock_out and lock_out.count("setup.cfg") == 3
    for name in ("test", "postgres", "base"):
        assert f"-o requirements/{name}.lock setup.cfg" in lock_out
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_a_postgres_url_without_psycopg_says_to_install_the_extra(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text('sources:\n  g: {provider: github, secrets: ["${env:X}"]}\nrules: []\n'
                     'settings: {database_url: "postgresql://127.0.0.1:5432/test"}\n')
    code = ("import sys; sys.modules['psycopg'] = None\n"   # as without the postgres extra
            "from bridge.cli.main import main; sys.argv[0] = 'bridge'; main()")
    for command in ("dispatch", "serve"):
        out = subprocess.run([sys.executable, "-c", code, command, "--rules", str(rules),
                              "--state-dir", str(tmp_path / "var")], capture_output=True, text=True,
                             env={**os.environ, "X": "x"}, timeout=60)
        assert out.returncode == 1, out.stderr
        assert "psycopg is not installed" in out.stderr and "bridge[postgres]" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_the_sqlite_default_needs_no_psycopg(tmp_path):
    """Without the postgres extra: every module loads and a SQLite store takes a delivery."""
    code = f"""
import sys
sys.modules["psycopg"] = None
import bridge.cli.main, bridge.service.web, bridge.service.dispatcher, bridge.dispatch.loop, bridge.web.ingress
from bridge.events import Event
from bridge.jobs import Job
from bridge.store import NewDelivery, Store
event = Event(provider="github", source="github", delivery_id="d-1", kind="push", repo="a/b",
              ref="refs/heads/main", ref_name="main", before="1" * 40, after="2" * 40,
              sha="2" * 40, pusher="octocat")
store = Store.open("sqlite:///{tmp_path / 'bridge.db'}")
store.ingest(NewDelivery(source="github", provider="github", delivery_id="d-1", received_at=1.0,
                         headers={{}}, body=b"{{}}", event=event, outcome="matched", reason="",
                         verdicts=[], rules_version="v1", content_key="k"),
             [Job(rule="r", target="t", kind="memory", request={{"target": "t"}},
                  needs_files=False, path_filter=None)])
print(store.get_delivery("d-1")["jobs"][0]["state"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "queued\n", out.stderr


def test_the_console_command_is_not_named_like_iproute2s_bridge():
    """iproute2 ships /usr/sbin/bridge: our command has a name of its own, in setup.cfg, the
    Makefile, the units and every README example; `python -m bridge` stays."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = [line.split("=")[0].strip() for line in
               cfg["options.entry_points"]["console_scripts"].strip().splitlines()]
    assert scripts == ["cibridge"]
    for unit in (ROOT / "systemd").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart"):
                assert "/bin/bridge " not in line + " ", (unit.name, line)
    readme = (ROOT / "README.md").read_text()
    assert not re.search(r"(?m)^\s*(?:\$ )?bridge (?:serve|check|explain|deliveries|send|retry)\b", readme)
    assert not re.search(r"bin/bridge\b", readme.replace("/usr/sbin/bridge", "") + (ROOT / "Makefile").read_text()
                         + (ROOT / "deploy" / "install.sh").read_text())
