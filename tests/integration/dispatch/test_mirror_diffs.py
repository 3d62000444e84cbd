"""The changed files of a push from real git repositories served over file:// and `git daemon`: the
two-dot diff, renames, odd names, force pushes, new branches and first pushes, long histories."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge.dispatch.changes import resolve_changed_files
from bridge.dispatch.mirror import Mirrors, mirror_key
from bridge.events import ZERO_SHA, Commit
from bridge.payload_files import FileResolution
from helpers.git import ISOLATED, Upstream, push
from helpers.mirrors import daemon, make_upstream, mirrors  # noqa: F401  (fixtures)


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
