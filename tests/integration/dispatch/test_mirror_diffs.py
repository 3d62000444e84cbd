"""Tests for bridge.changes and `cibridge mirrors`: the changed-files chain against real git
repositories made here, served over file:// and over `git daemon` on 127.0.0.1. Those URLs
reach the mirror as a source's configured `clone_url` (`url=`): URLs from a payload may only
be https or ssh (see test_payload_urls.py)."""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli.mirrors import mirrors as mirrors_cli
from bridge.dispatch.changes import (FileResolution, Mirrors, mirror_key, redact, resolve_changed_files,
                                     url_refusal)
from bridge.events import ZERO_SHA, Commit
from bridge.policies import parse_duration, parse_size
from helpers.git import GIT_ENV, ISOLATED, Upstream, push
from helpers.ports import free_port


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """`git daemon` on 127.0.0.1 serving every repository under its base path."""
    base = tmp_path_factory.mktemp("served")
    port = free_port()
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen(
        [f"{exec_path}/git-daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}",
         "--export-all", f"--base-path={base}", "--informative-errors", str(base)],
        env=GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.05)
    yield base, port
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture
def make_upstream(tmp_path, request):
    """Upstream repositories, reached over file:// or git://127.0.0.1 (served by git daemon)."""
    made = []

    def make(transport: str = "file") -> Upstream:
        name = f"{request.node.name.replace('[', '-').strip(']')}-{len(made)}"
        if transport == "git":
            base, port = request.getfixturevalue("daemon")
            up = Upstream(base / name, f"git://127.0.0.1:{port}/{name}")
        else:
            up = Upstream(tmp_path / name, f"file://{tmp_path / name}")
        made.append(up)
        return up
    return make


@pytest.fixture
def mirrors(tmp_path):
    return Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ISOLATED)


# --- existing branches ---------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["file", pytest.param("git", marks=pytest.mark.slow)])
def test_existing_branch_push_is_the_two_dot_diff(make_upstream, mirrors, transport):
    up = make_upstream(transport)
    before = up.commit({"a.txt": "a", "c.txt": "c", "same.txt": "s"})
    up.commit({"a.txt": "a2", "b.txt": "b"})
    after = up.commit({"c.txt": None})
    event = push(up.url, before, after, commits=[Commit(id=after, removed=("c.txt",))])

    got = resolve_changed_files(event, mirrors, url=up.url)

    assert got.files == {"a.txt", "b.txt", "c.txt"}
    assert got.source == "mirror"
    assert "capped" in got.reason and f"git diff {before[:12]}..{after[:12]}" in got.reason
    # Asked again (replay, `cibridge explain --resolve-files`): the same answer from the warm mirror.
    assert resolve_changed_files(event, mirrors, url=up.url) == got
    [listed] = mirrors.list()
    assert listed["url"] == up.url and listed["size"] > 0
    assert Path(listed["path"]).name == mirror_key(up.url)


def test_rename_counts_old_and_new_path(make_upstream, mirrors):
    up = make_upstream()
    before = up.commit({"src/old_name.py": "x = 1\n" * 50, "keep.txt": "k"})
    up.git("mv", "src/old_name.py", "src/new_name.py")
    after = up.commit({})

    got = mirrors.changed_files(push(up.url, before, after), url=up.url)

    assert got == FileResolution(frozenset({"src/old_name.py", "src/new_name.py"}), "mirror", got.reason)


def test_names_with_spaces_unicode_dashes_and_newlines(make_upstream, mirrors):
    up = make_upstream()
    before = up.commit({"plain.txt": "p"})
    names = ["with space/a b.txt", "ünïcödé/файл.txt", "-rf", "--help", "dir/-x.txt", "tab\tname",
             "new\nline", "日本語.md"]
    after = up.commit({name: name for name in names})

    got = mirrors.changed_files(push(up.url, before, after), url=up.url)

    assert got.source == "mirror"
    assert got.files == set(names)


def test_old_server_that_refuses_objects_by_id_falls_back_to_the_branch(make_upstream, tmp_path):
    # Protocol v0 without uploadpack.allowAnySHA1InWant serves only advertised tips: `before`
    # (not a tip any more) must come through the branch's history instead.
    up = make_upstream()
    before = up.commit({"a": "1"})
    up.commit({"b": "1"})
    after = up.commit({"c": "1"})
    old = Mirrors(tmp_path / "m", fetch_timeout=30,
                  env={**ISOLATED, "GIT_CONFIG_PARAMETERS": "'protocol.version=0'"})

    got = old.changed_files(push(up.url, before, after), url=up.url)

    assert (got.source, got.files) == ("mirror", {"b", "c"})


# --- force pushes ---------------------------------------------------------------------------------

def test_force_push_whose_before_is_gone_is_unknown_with_the_reason(make_upstream, mirrors):
    up = make_upstream()
    first = up.commit({"a": "1"})
    before = up.commit({"b": "1"})
    up.git("reset", "-q", "--hard", first)
    after = up.commit({"c": "1"})
    up.forget_unreachable()
    event = push(up.url, before, after, forced=True, complete=True, provider="github",
                 commits=[Commit(id=after, added=("c",))])

    got = resolve_changed_files(event, mirrors, url=up.url)

    assert got.files is None and got.source == "unknown"
    assert "forced push" in got.reason
    assert f"before {before[:12]} is no longer on {up.url} after a force push" in got.reason


def test_force_push_diff_works_when_the_mirror_saw_before(make_upstream, mirrors):
    up = make_upstream()
    first = up.commit({"a": "1"})
    before = up.commit({"b": "1"})
    assert mirrors.changed_files(push(up.url, first, before), url=up.url).files == {"b"}
    up.git("reset", "-q", "--hard", first)
    after = up.commit({"c": "1"})
    up.forget_unreachable()

    got = mirrors.changed_files(push(up.url, before, after, forced=True), url=up.url)

    # Two-dot diff: "b" disappeared, "c" appeared.
    assert (got.source, got.files) == ("mirror", {"b", "c"})


# --- new branches ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("default_branch", ["main", ""], ids=["from-payload", "from-remote-HEAD"])
def test_new_branch_from_an_old_commit_diffs_against_the_merge_base(make_upstream, mirrors,
                                                                     default_branch):
    up = make_upstream("git")
    up.commit({"m1": "1"})
    base = up.commit({"m2": "1"})
    for i in range(3, 8):
        up.commit({f"m{i}": "1"})          # main moves on after the branch point
    # An earlier push left the mirror shallow: the merge base needs it unshallowed.
    assert mirrors.changed_files(push(up.url, up.rev("HEAD~1"), up.rev()), url=up.url).files == {"m7"}
    up.git("checkout", "-q", "-b", "feature/x", base)
    up.commit({"f1": "1"})
    after = up.commit({"f2": "1", "m1": "changed on the branch"})
    up.git("checkout", "-q", "main")        # the host's HEAD names its default branch
    event = push(up.url, ZERO_SHA, after, ref="refs/heads/feature/x", default_branch=default_branch,
                 provider="github", complete=True)   # a created ref with no commits listed

    got = resolve_changed_files(event, mirrors, url=up.url)

    assert got.files == {"f1", "f2", "m1"}
    assert got.source == "mirror" and "new branch" in got.reason
    assert f"{base[:12]}..{after[:12]}" in got.reason and "'main'" in got.reason


def test_new_branch_without_new_commits_changed_nothing(make_upstream, mirrors):
    up = make_upstream()
    old = up.commit({"a": "1"})
    up.commit({"b": "1"})
    up.git("branch", "hotfix", old)

    got = mirrors.changed_files(push(up.url, ZERO_SHA, old, ref="refs/heads/hotfix"), url=up.url)

    assert (got.source, got.files) == ("mirror", frozenset())


def test_new_branch_without_a_default_branch_counts_every_file(make_upstream, mirrors):
    up = make_upstream()
    up.commit({"a": "1", "dir/b": "2"})
    up.git("branch", "-m", "main", "topic")
    up.git("symbolic-ref", "HEAD", "refs/heads/nowhere")   # the remote's HEAD names no branch
    after = up.rev("topic")

    got = mirrors.changed_files(push(up.url, ZERO_SHA, after, ref="refs/heads/topic", default_branch=""), url=up.url)

    assert (got.source, got.files) == ("mirror", {"a", "dir/b"})
    assert "every file" in got.reason


def test_first_push_of_the_default_branch_counts_every_file(make_upstream, mirrors):
    up = make_upstream()
    up.commit({"a": "1"})
    after = up.commit({"b": "1"})

    got = mirrors.changed_files(push(up.url, ZERO_SHA, after), url=up.url)

    assert (got.source, got.files) == ("mirror", {"a", "b"})
    assert "the new branch is the default branch" in got.reason


# --- the big push ---------------------------------------------------------------------------------

def fast_import_history(up: Upstream, count: int) -> list[str]:
    """`count` commits on main with `git fast-import`: commit i rewrites src/mod{i % 100}.txt;
    tmp/scratch.txt is added and removed again, README.md changed and changed back."""
    base = up.rev()
    lines = []
    for i in range(1, count + 1):
        body = f"{i}\n"
        lines += [f"commit refs/heads/main", f"mark :{i}",
                  f"committer Test <t@example.com> {1700000000 + i} +0000",
                  f"data {len(f'c{i}')}", f"c{i}"]
        if i == 1:
            lines.append(f"from {base}")
        lines += [f"M 644 inline src/mod{i % 100}.txt", f"data {len(body)}", body.rstrip("\n")]
        if i == 10:
            lines += ["M 644 inline tmp/scratch.txt", "data 1", "x"]
        if i == 20:
            lines.append("D tmp/scratch.txt")
        if i in (30, 40):
            text = "changed\n" if i == 30 else "readme\n"
            lines += ["M 644 inline README.md", f"data {len(text)}", text.rstrip("\n")]
    marks = up.path / "marks"
    up.git("fast-import", "--quiet", f"--export-marks={marks}", input="\n".join(lines).encode() + b"\n")
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    return [by_mark[f":{i}"] for i in range(1, count + 1)]


def test_gitlab_push_of_5000_commits_with_20_in_the_payload(make_upstream, mirrors):
    up = make_upstream()
    before = up.commit({**{f"src/mod{k}.txt": "base\n" for k in range(100)}, "README.md": "readme\n",
                        "docs/untouched.md": "d"})
    shas = fast_import_history(up, 5000)
    newest = [Commit(id=sha, modified=(f"src/mod{i % 100}.txt",))
              for i, sha in enumerate(shas[-20:], start=4981)]
    event = push(up.url, before, shas[-1], commits=newest, complete=False)   # total_commits_count 5000
    assert event.changed_files() is None

    got = resolve_changed_files(event, mirrors, url=up.url)

    # Every module changed; scratch.txt and README.md were changed and changed back.
    assert got.files == {f"src/mod{k}.txt" for k in range(100)}
    assert got.source == "mirror"


# --- the payload, tags, deletions -----------------------------------------------------------------

def test_complete_github_payload_decides_without_the_mirror(tmp_path):
    mirrors = Mirrors(tmp_path / "mirrors", env=ISOLATED)
    commits = [Commit(id="1" * 40, added=("a",), modified=("b",)),
               Commit(id="2" * 40, removed=("a",), modified=("c d",))]
    event = push("file:///nonexistent", "3" * 40, "2" * 40, commits=commits, complete=True,
                 provider="github")

    got = resolve_changed_files(event, mirrors)

    # The union of the per-commit lists (it keeps "a", added then removed: see the module doc).
    assert got == FileResolution(frozenset({"a", "b", "c d"}), "payload",
                                 "the payload lists all 2 pushed commits with their files")
    assert not (tmp_path / "mirrors").exists()


@pytest.mark.parametrize("changes, reason", [
    (dict(complete=False), "the payload's commit list is capped by the host"),
    (dict(commits=[Commit(id="1" * 40, added=("a",))] * 2048),
     "GitHub lists at most 2048 commits and this payload has 2048"),
    (dict(commits=[Commit(id="1" * 40, has_files=False)]), "the payload's commits carry no file lists"),
    (dict(commits=()), "the payload lists no commits (the branch may have moved backwards)"),
    (dict(before=ZERO_SHA, commits=()), "a new branch whose payload lists no commits"),
    (dict(forced=True), "a forced push: the payload lists only the new commits"),
])
def test_payloads_that_cannot_be_trusted_say_why(changes, reason):
    args = dict(before="3" * 40, commits=[Commit(id="1" * 40, added=("a",))], complete=True,
                provider="github", forced=False)
    args.update(changes)
    event = push("file:///x", args.pop("before"), "1" * 40, **args)

    assert resolve_changed_files(event, None) == FileResolution(
        None, "unknown", f"{reason}, and no git mirror is configured")


def test_tags_and_deleted_refs(tmp_path):
    mirrors = Mirrors(tmp_path / "mirrors", env=ISOLATED)
    tag = push("file:///x", ZERO_SHA, "1" * 40, ref="refs/tags/v1.0")
    deleted = push("file:///x", "1" * 40, ZERO_SHA)

    for resolve in (lambda e: resolve_changed_files(e, mirrors), mirrors.changed_files):
        assert resolve(tag) == FileResolution(None, "none", "path filters do not apply to tags")
        assert resolve(deleted) == FileResolution(frozenset(), "none", "the ref was deleted: no files changed")
    assert not (tmp_path / "mirrors").exists()


def test_shas_are_checked_before_git_sees_them(make_upstream, mirrors):
    up = make_upstream()
    sha = up.commit({"a": "1"})
    for before, after in [("--upload-pack=touch", sha), (sha, "HEAD"), (sha, sha[:12])]:
        got = mirrors.changed_files(push(up.url, before, after), url=up.url)
        assert got.source == "unknown" and "is not a commit id" in got.reason


# --- hostile and broken remotes -------------------------------------------------------------------

def test_host_that_never_answers_times_out(tmp_path):
    with socket.socket() as silent:         # accepts connections (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"git://127.0.0.1:{silent.getsockname()[1]}/acme/api.git"
        mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=1.0, env=ISOLATED)
        started = time.monotonic()

        got = mirrors.changed_files(push(url, "1" * 40, "2" * 40), url=url)

    assert got == FileResolution(None, "unknown", f"fetching from {url} timed out after 1s")
    assert time.monotonic() - started < 20


def test_credentials_never_leave_the_process(tmp_path, caplog):
    url = f"https://bridge-bot:s3cr3t-t0ken@127.0.0.1:{free_port()}/acme/api.git"   # nothing listens
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=10, env=ISOLATED)
    caplog.set_level(logging.DEBUG)
    # A mirror that once answered (a failing fetch into a new one leaves nothing behind).
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "mirrors" / mirror_key(url))],
                   env=GIT_ENV, check=True, capture_output=True)

    got = mirrors.changed_files(push(url, "1" * 40, "2" * 40), url=url)

    assert got.source == "unknown" and "fetch from https://***@127.0.0.1" in got.reason
    [listed] = mirrors.list()
    assert listed["url"] == redact(url) == url.replace("bridge-bot:s3cr3t-t0ken", "***")
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "mirrors").rglob("*") if p.is_file())
    for text in (got.reason, caplog.text, str(listed), on_disk.decode("latin-1")):
        assert "s3cr3t" not in text
    assert mirror_key(url) == mirror_key(url.replace("bridge-bot:s3cr3t-t0ken@", ""))


@pytest.mark.parametrize("template", [
    "ext::sh -c touch% {pwned}",
    "ext::sh -c 'touch {pwned}'",
    "fd::17",
    "--upload-pack=touch {pwned}",
    "-uhttps://example.com/x.git",
    "ssh://-oProxyCommand=touch%20{pwned}/x",
    "-oProxyCommand=touch {pwned}:x",
    "git@-oProxyCommand=x:repo",
    "http://127.0.0.1:1/plain-http-is-not-allowed.git",
    "relative/path",
    "file:///tmp/x\n--upload-pack=touch",
])
def test_dangerous_urls_are_refused(tmp_path, template):
    pwned = tmp_path / "pwned"
    url = template.format(pwned=pwned)
    mirrors = Mirrors(tmp_path / "mirrors", env=ISOLATED)

    for got in (mirrors.changed_files(push(url, "1" * 40, "2" * 40)),            # from the payload
                mirrors.changed_files(push(url, "1" * 40, "2" * 40), url=url)):  # configured
        assert got.source == "unknown" and got.reason.startswith("refused clone URL")
    assert not pwned.exists()
    assert not (tmp_path / "mirrors").exists()


def test_git_itself_refuses_helpers_in_the_mirror_environment(tmp_path):
    # Defence in depth: were url_refusal ever wrong, git run with the mirrors' environment
    # still refuses ext:: and every scheme not allowed.
    pwned = tmp_path / "pwned"
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "m")], env=GIT_ENV, check=True)
    mirrors = Mirrors(tmp_path / "mirrors", env=ISOLATED, allowed_schemes=("https",))
    for url in (f"ext::sh -c touch% {pwned}", f"file://{tmp_path}/m"):
        done = subprocess.run(["git", "fetch", "origin", "1" * 40], cwd=tmp_path / "m",
                              env={**os.environ, **mirrors._git_env(url)}, capture_output=True, text=True)
        assert done.returncode != 0 and "not allowed" in done.stderr
    assert not pwned.exists()


def test_url_rules():
    allowed = ("https", "ssh", "git", "file")
    for ok in ("https://github.com/acme/api.git", "git@github.com:acme/api.git",
               "ssh://git@gitlab.example.com:2222/group/sub/proj.git", "git://127.0.0.1:9418/x",
               "file:///srv/git/x.git", "/srv/git/x.git", "git+ssh://host/x"):
        assert url_refusal(ok, allowed) is None, ok
    assert "scheme 'ssh'" in url_refusal("git@github.com:acme/api.git", ("https",))
    assert redact("fatal: unable to access 'https://u:p@ss@h/x': no") == "fatal: unable to access 'https://***@h/x': no"
    assert redact("git@github.com:acme/api.git") == "git@github.com:acme/api.git"


# --- sharing ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_dispatchers_resolving_one_repository_at_once(make_upstream, tmp_path):
    up = make_upstream("git")
    base = up.commit({"a": "1"})
    mid = up.commit({"b": "1"})
    after = up.commit({"c": "1"})
    up.git("branch", "feature", base)
    up.git("checkout", "-q", "feature")
    feature = up.commit({"f": "1"})
    events = [push(up.url, base, after), push(up.url, mid, after), push(up.url, base, mid),
              push(up.url, ZERO_SHA, feature, ref="refs/heads/feature")]
    expected = [{"b", "c"}, {"c"}, {"b"}, {"f"}]
    # Two dispatcher processes' worth of Mirrors objects over one state directory.
    dispatchers = [Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ISOLATED) for _ in range(2)]
    start = threading.Barrier(len(events))
    results: dict[int, FileResolution] = {}

    def resolve(i: int) -> None:
        start.wait()
        results[i] = dispatchers[i % 2].changed_files(events[i], url=up.url)

    threads = [threading.Thread(target=resolve, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert [results[i].files for i in range(len(events))] == expected
    assert len(dispatchers[0].list()) == 1


def test_a_mirror_locked_elsewhere_is_waited_for_then_reported_busy(make_upstream, tmp_path):
    up = make_upstream()
    before, after = up.commit({"a": "1"}), up.commit({"b": "1"})
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=0.2, env=ISOLATED)
    (tmp_path / "mirrors").mkdir()
    with open(tmp_path / "mirrors" / f"{mirror_key(up.url)}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)

        got = mirrors.changed_files(push(up.url, before, after), url=up.url)

    assert got.source == "unknown" and "stayed busy" in got.reason
    assert mirrors.changed_files(push(up.url, before, after), url=up.url).files == {"b"}


# --- eviction and the CLI ------------------------------------------------------------------------------

def test_prune_evicts_by_age_then_by_size(make_upstream, tmp_path):
    clock = [1_000_000.0]
    mirrors = Mirrors(tmp_path / "mirrors", env=ISOLATED, now=lambda: clock[0], max_age=1e9,
                      max_bytes=2**40)
    urls = []
    for i in range(3):
        up = make_upstream()
        before = up.commit({"a": "1"})
        after = up.commit({f"big{i}": os.urandom(50_000).hex()})
        assert mirrors.changed_files(push(up.url, before, after), url=up.url).files == {f"big{i}"}
        urls.append(up.url)
        clock[0] += 3600
    sizes = {m["url"]: m["size"] for m in mirrors.list()}
    assert [m["url"] for m in mirrors.list()] == urls[::-1]      # most recently used first

    # Unused for more than 2.5 hours: only the first.
    assert mirrors.prune(max_age=2.5 * 3600, max_bytes=2**40) == [urls[0]]
    # Over the size cap: the least recently used goes first.
    assert mirrors.prune(max_age=1e9, max_bytes=sizes[urls[2]] + 1) == [urls[1]]
    assert [m["url"] for m in mirrors.list()] == [urls[2]]
    assert sorted(p.name for p in (tmp_path / "mirrors").iterdir()) == sorted(
        [mirror_key(urls[2]), f"{mirror_key(urls[2])}.lock"])


def test_mirrors_cli_lists_and_prunes(make_upstream, tmp_path, monkeypatch):
    up = make_upstream()
    before, after = up.commit({"a": "1"}), up.commit({"b": "1"})
    state = tmp_path / "state"
    Mirrors(state / "mirrors", env=ISOLATED, now=lambda: time.time() - 3 * 86400).changed_files(
        push(up.url, before, after), url=up.url)
    runner = CliRunner()
    monkeypatch.setenv("BRIDGE_STATE_DIR", str(state))

    listed = runner.invoke(mirrors_cli, ["list"])
    assert listed.exit_code == 0 and up.url in listed.output and mirror_key(up.url) in listed.output

    kept = runner.invoke(mirrors_cli, ["prune", "--max-age", "4d"])
    assert kept.exit_code == 0 and kept.output == "0 mirror(s) evicted\n"
    bad = runner.invoke(mirrors_cli, ["prune", "--max-size", "lots"])
    assert bad.exit_code == 2 and "not a size: 'lots'" in bad.output
    pruned = runner.invoke(mirrors_cli, ["prune", "--state-dir", str(state), "--max-age", "2d"])
    assert pruned.exit_code == 0 and pruned.output == f"evicted {up.url}\n1 mirror(s) evicted\n"
    assert runner.invoke(mirrors_cli, ["list"]).output == f"no mirrors in {state / 'mirrors'}\n"


def test_duration_and_size_parsing():
    assert [parse_duration(t) for t in ("30d", "12h", "90m", "45s", "10", "2w")] == [
        30 * 86400, 12 * 3600, 5400, 45, 10, 14 * 86400]
    assert [parse_size(t) for t in ("5G", "500M", "1.5GiB", "100K", "7", "2gb")] == [
        5 * 2**30, 500 * 2**20, int(1.5 * 2**30), 100 * 2**10, 7, 2 * 2**30]
    for parse, bad in [(parse_duration, ""), (parse_duration, "-1d"), (parse_duration, "d"),
                       (parse_duration, "5y"), (parse_size, "5X"), (parse_size, "G")]:
        with pytest.raises(ValueError):
            parse(bad)


def test_clone_token_goes_only_to_the_configured_clone_url():
    from types import SimpleNamespace

    from bridge.dispatch.changes import source_clone_url
    event = SimpleNamespace(clone_urls=("https://attacker.example/x.git",))
    with_url = SimpleNamespace(provider="gitlab", options={"clone_url": "https://gitlab.example.com/g/p.git",
                                                            "clone_token": "glpat-secret"})
    assert source_clone_url(with_url, event) == "https://oauth2:glpat-secret@gitlab.example.com/g/p.git"
    without_url = SimpleNamespace(provider="gitlab", options={"clone_token": "glpat-secret"})
    assert source_clone_url(without_url, event) is None   # the event's own URL, no token
