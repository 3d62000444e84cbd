"""The changed files from the payload alone: a complete GitHub payload decides without the mirror,
payloads that cannot be trusted say why, tags and deleted refs, SHAs checked before git sees them."""
from __future__ import annotations

import pytest

from bridge.dispatch.changes import resolve_changed_files
from bridge.dispatch.mirror import Mirrors
from bridge.events import ZERO_SHA, Commit
from bridge.payload_files import FileResolution
from helpers.git import ISOLATED, push
from helpers.mirrors import make_upstream, mirrors  # noqa: F401  (fixtures)


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
