"""Path filters on a capped push, end to end: a real `cibridge serve`, a real git repository, and
the dispatcher computing changed files in its mirror before it decides to build or skip."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from helpers.rules import SECRET_ENV
from helpers.payloads import load_payload
from helpers.process import BridgeProcess, wait_for

from bridge.cli.main import cli

pytestmark = pytest.mark.slow

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()


def commit(repo, path, text, message):
    f = repo / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "origin"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    base = commit(r, "src/app.py", "v1\n", "start")
    return r, base


def capped_push(before, after, listed_files):
    """The GitLab docs push, re-aimed at our repository: the list holds 1 of 25 commits."""
    body, headers = load_payload("gitlab/push_hook__docs.json")
    payload = json.loads(body)
    payload.update(before=before, after=after, checkout_sha=after, ref="refs/heads/main",
                   total_commits_count=25)
    payload["commits"] = [{"id": after, "message": "change", "timestamp": "2024-01-01T00:00:00Z",
                           "url": "", "author": {"name": "t", "email": "t@example.com"},
                           "added": [], "modified": listed_files, "removed": []}]
    headers["X-Gitlab-Token"] = SECRET_ENV["GL_TOKEN"]
    headers["X-Gitlab-Event-UUID"] = headers["Idempotency-Key"] = f"uuid-{after[:12]}"
    return json.dumps(payload).encode(), headers


def rules_for(origin, out):
    return textwrap.dedent(f"""\
    sources:
      gitlab:
        provider: gitlab
        secrets: ["${{env:GL_TOKEN}}"]
        clone_url: file://{origin}
    targets:
      local: {{kind: exec, timeout: 30}}
    rules:
      - name: src-only
        on: {{repo: "**", branches: [main], paths: ["src/**"]}}
        run: {{target: local, command: ["sh", "-c", "echo $BRIDGE_SHA >> {out}"]}}
    """)


def test_dispatcher_resolves_capped_pushes_in_the_mirror(tmp_path, repo):
    origin, base = repo
    # 24 commits touching docs only, then one more docs commit: the payload lists only the last,
    # and lies by omission that src/ is untouched... which is true here: the push must be skipped.
    for i in range(24):
        commit(origin, f"docs/page{i}.md", f"{i}\n", f"docs {i}")
    docs_head = commit(origin, "docs/last.md", "x\n", "docs last")
    # A second push whose listed commit touches docs only, but an unlisted one touched src/.
    commit(origin, "src/app.py", "v2\n", "real change")
    mixed_head = commit(origin, "docs/more.md", "y\n", "docs again")
    out = tmp_path / "built.txt"
    with BridgeProcess(tmp_path / "b", rules_for(origin, out), env=SECRET_ENV) as bridge:
        r1 = bridge.post("gitlab", *capped_push(base, docs_head, ["docs/last.md"]))
        r2 = bridge.post("gitlab", *capped_push(docs_head, mixed_head, ["docs/more.md"]))
        assert r1.status_code == 202 and r2.status_code == 202
        assert r1.json()["jobs"][0]["needs_files"] is True
        store = bridge.store()

        def state(resp):
            return store.get_delivery(resp.json()["delivery"])["jobs"][0]

        wait_for(lambda: state(r1)["state"] == "skipped" and state(r2)["state"] == "succeeded",
                 timeout=30, what="mirror decisions")
        assert "no changed file matches paths [src/**]" in str(state(r1)["detail"])
        assert "files from mirror" in str(state(r1)["detail"])
        assert out.read_text().split() == [mixed_head]
        show = subprocess.run([sys.executable, "-m", "bridge", "deliveries", "--rules", str(bridge.rules),
                               "--state-dir", str(bridge.state), "show", r1.json()["delivery"]],
                              capture_output=True, text=True, env=bridge.env, cwd=bridge.dir)
        assert "state skipped" in show.stdout, show.stderr
        assert "files from mirror" in show.stdout
        built = state(r2)["detail"]["paths"]
        assert built == "file 'src/app.py' matches paths [src/**] (files from mirror)", built
        store.close()


def test_explain_resolve_files_fetches_like_the_dispatcher(tmp_path, repo, monkeypatch):
    origin, base = repo
    for i in range(3):
        commit(origin, f"docs/p{i}.md", "d\n", f"docs {i}")
    head = commit(origin, "src/lib.py", "x\n", "src change")
    body, headers = capped_push(base, head, ["src/lib.py"])
    for k, v in SECRET_ENV.items():
        monkeypatch.setenv(k, v)
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_for(origin, tmp_path / "x"))
    payload = tmp_path / "p.json"
    payload.write_bytes(body)
    args = ["explain", "--rules", str(rules), "--source", "gitlab", "--event", "Push Hook",
            "--state-dir", str(tmp_path / "var"), "--format", "json", str(payload)]
    plain = json.loads(CliRunner().invoke(cli, args).output)
    assert plain["files"]["source"] == "unknown" and plain["rules"][0]["needs_files"] is True
    resolved = json.loads(CliRunner().invoke(cli, args + ["--resolve-files"]).output)
    assert resolved["files"]["source"] == "mirror"
    assert set(resolved["files"]["files"]) == {"docs/p0.md", "docs/p1.md", "docs/p2.md", "src/lib.py"}
    assert resolved["rules"][0]["matched"] is True
    assert "files from mirror" in resolved["rules"][0]["reason"]


class QuickStartBridge(BridgeProcess):
    """`cibridge serve` exactly as the README's quick start (`make run`) runs it: relative
    `--rules rules.yaml --state-dir var`, from the directory that holds them."""

    def argv(self):
        return [sys.executable, "-m", "bridge", "serve", "--rules", "rules.yaml",
                "--state-dir", "var", "--bind", f"127.0.0.1:{self.port}"]


def test_quick_start_command_line_with_a_relative_state_dir_resolves_in_the_mirror(tmp_path, repo):
    """A relative state directory once made git look for 'var/mirrors/<hash>' inside the mirror
    itself: every fetch failed and on_unknown_files: run built a docs-only push."""
    origin, base = repo
    for i in range(3):
        commit(origin, f"docs/page{i}.md", f"{i}\n", f"docs {i}")
    docs_head = commit(origin, "docs/last.md", "x\n", "docs last")
    src_head = commit(origin, "src/app.py", "v2\n", "real change")
    out = tmp_path / "built.txt"
    with QuickStartBridge(tmp_path / "quick", rules_for(origin, out), env=SECRET_ENV) as bridge:
        r1 = bridge.post("gitlab", *capped_push(base, docs_head, ["docs/last.md"]))
        r2 = bridge.post("gitlab", *capped_push(docs_head, src_head, ["src/app.py"]))
        assert r1.status_code == 202 and r2.status_code == 202, (r1.text, r2.text)
        assert r1.json()["jobs"][0]["needs_files"] is True
        store = bridge.store()

        def job(resp):
            return store.get_delivery(resp.json()["delivery"])["jobs"][0]

        try:
            wait_for(lambda: job(r1)["state"] not in ("queued", "running", "claimed")
                     and job(r2)["state"] == "succeeded", timeout=60, what="mirror decisions")
            assert job(r1)["state"] == "skipped", (job(r1), bridge.logs()[-3000:])
            detail = str(job(r1)["detail"])
            assert "no changed file matches paths [src/**]" in detail and "files from mirror" in detail
            assert "not a git repository" not in bridge.logs()
            assert out.read_text().split() == [src_head]
        finally:
            store.close()
    # Everything the bridge wrote is under <cwd>/var, the mirror included.
    assert list((bridge.dir / "var" / "mirrors").glob("*/HEAD"))


def test_explain_resolve_files_with_a_relative_state_dir(tmp_path, repo):
    origin, base = repo
    commit(origin, "docs/a.md", "d\n", "docs")
    head = commit(origin, "docs/b.md", "d\n", "docs again")
    work = tmp_path / "work"
    work.mkdir()
    (work / "rules.yaml").write_text(rules_for(origin, tmp_path / "x"))
    body, _ = capped_push(base, head, ["docs/b.md"])
    (work / "p.json").write_bytes(body)
    done = subprocess.run([sys.executable, "-m", "bridge", "explain", "--rules", "rules.yaml",
                           "--source", "gitlab", "--event", "Push Hook", "--state-dir", "var",
                           "--resolve-files", "--format", "json", "p.json"],
                          cwd=work, env={**os.environ, **SECRET_ENV}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["files"]["source"] == "mirror", result["files"]
    assert set(result["files"]["files"]) == {"docs/a.md", "docs/b.md"}
    assert result["rules"][0]["matched"] is False
    assert list((work / "var" / "mirrors").glob("*/HEAD"))


def test_serve_never_contacts_a_host_the_payload_names(tmp_path, repo):
    """SSRF: a signed capped push whose clone URLs point at a listener of the sender's choosing.
    The source configures no clone_url and no clone_hosts (GitLab: gitlab.com only): the
    listener sees no connection and the job follows on_unknown_files with the reason."""
    import socket
    origin, base = repo
    head = commit(origin, "docs/a.md", "d\n", "docs")
    out = tmp_path / "built.txt"
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(16)
        trap.settimeout(0)
        port = trap.getsockname()[1]
        text = rules_for(origin, out).replace(f"    clone_url: file://{origin}\n", "") \
            .replace('paths: ["src/**"]}', 'paths: ["src/**"]}\n    on_unknown_files: skip')
        body, headers = capped_push(base, head, ["docs/a.md"])
        payload = json.loads(body)
        for key in ("project", "repository"):
            payload[key]["git_http_url"] = f"https://127.0.0.1:{port}/acme/api.git"
            payload[key]["git_ssh_url"] = f"ssh://git@127.0.0.1:{port}/acme/api.git"
        with BridgeProcess(tmp_path / "b", text, env=SECRET_ENV) as bridge:
            r = bridge.post("gitlab", json.dumps(payload).encode(), headers)
            assert r.status_code == 202, r.text
            store = bridge.store()
            try:
                job = lambda: store.get_delivery(r.json()["delivery"])["jobs"][0]  # noqa: E731
                wait_for(lambda: job()["state"] == "skipped", timeout=60, what="the job skipped")
                detail = str(job()["detail"])
            finally:
                store.close()
        assert f"host 127.0.0.1:{port} is not one the bridge fetches from" in detail, detail
        assert "on_unknown_files: skip" in detail
        try:
            trap.accept()
            contacted = True
        except BlockingIOError:
            contacted = False
        assert not contacted, "the bridge connected to the host the payload named"
    assert not out.exists()
