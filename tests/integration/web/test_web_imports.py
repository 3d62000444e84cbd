"""Web workers never import what only the dispatcher uses (boto3, botocore, python-jenkins,
GitPython, requests): the WSGI app built from rules with Jenkins, CodeBuild and exec targets, in a
fresh interpreter, and a real `cibridge serve` web worker (asked through a gunicorn config hook)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers.process import BridgeProcess, wait_for

DISPATCHER_ONLY = {"boto3", "botocore", "jenkins", "git", "requests", "urllib3", "bridge.dispatch",
                   "bridge.targets.jenkins", "bridge.targets.codebuild", "bridge.service.dispatcher"}

RULES = """\
sources:
  github: {provider: github, secrets: ["${env:GH_SECRET}"]}
targets:
  ci: {kind: jenkins, url: "https://ci.example", user: u, token: "${env:JENKINS_TOKEN}"}
  cb: {kind: codebuild, region: eu-west-1}
  local: {kind: exec}
rules:
  - {name: a, on: {repo: o/r, branches: [main]}, run: {target: ci, job: team/build}}
  - {name: b, on: {repo: o/r}, run: {target: cb, project: p}}
  - {name: c, on: {repo: o/r}, run: {target: local, command: [/bin/true]}}
"""
ENV = {"GH_SECRET": "s3cret-web-imports", "JENKINS_TOKEN": "t0ken"}


def _loaded(modules) -> set[str]:
    return {m for m in modules for top in DISPATCHER_ONLY if m == top or m.startswith(top + ".")}


def test_the_web_app_built_from_rules_with_every_target_kind_imports_none(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES)
    probe = ("import json, sys\nfrom bridge.service.web import make_app\n"
             "app = make_app(sys.argv[1], sys.argv[2])\n"
             "assert app.test_client().get('/healthz').status_code == 200\n"
             "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "rules.yaml"), str(tmp_path / "var")],
                         capture_output=True, text=True, timeout=120, env={**os.environ, **ENV})
    assert out.returncode == 0, out.stderr[-3000:]
    assert _loaded(json.loads(out.stdout.splitlines()[-1])) == set()


def test_a_real_serve_web_worker_imports_none(tmp_path):
    dump = tmp_path / "modules"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("import json, os, sys\n\n"
                    "def post_worker_init(worker):\n"
                    f"    with open({str(dump)!r} + '.' + str(os.getpid()), 'w') as f:\n"
                    "        json.dump(sorted(sys.modules), f)\n")
    bridge = BridgeProcess(tmp_path / "b", RULES, env={**ENV, "BRIDGE_GUNICORN_CONFIG": str(conf)},
                           workers=1)
    with bridge:
        wait_for(lambda: list(tmp_path.glob("modules.*")), what="the web worker's module list")
    (found,) = tmp_path.glob("modules.*")
    modules = json.loads(found.read_text())
    assert "bridge.web.ingress" in modules and _loaded(modules) == set()
