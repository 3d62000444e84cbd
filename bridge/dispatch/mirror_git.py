"""Changed files from a git mirror, the git side: one resolution inside a locked bare mirror.

Input: the pushed event and a repository (GitPython, imported only here and in mirror.py, when a
mirror is used) with git's environment. Output: the changed files and how they were found, or
`Unknown` with the (credential-free) reason.

Semantics follow GitHub Actions. An existing branch: the two-dot diff `before..after`, renames
counted as old and new path. A new branch: the diff against the merge base with the default
branch (the parent of the oldest pushed commit not on it). When no default branch can be found,
when the new branch *is* the default branch, or when it shares no history with it, every file in
`after` counts as changed: too many files only makes a `paths:` rule run, as GitHub Actions does
when it cannot compute a diff. A deleted ref changed no files; path filters do not apply to tags. A pull request: the
three-dot diff, the head against its merge base with the base branch.
"""
from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from bridge.events import Event
from bridge.providers.clone import redact
from bridge.refnames import branch_or_tag_problem

if TYPE_CHECKING:
    import git

log = logging.getLogger("bridge.changes")

SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# The server does not have the object (protocol v2 serves any object it has).
_GONE = re.compile(r"not our ref (?P<sha>[0-9a-f]{40,64})")
# The server has objects but will not hand them out by id (protocol v0 without
# uploadpack.allowAnySHA1InWant): fetch the branch instead.
#: The refs hosts serve a pull request's head under (GitHub, Gitea: pull; GitLab: merge-requests).
_PULL_REF = re.compile(r"refs/(pull|merge-requests)/[1-9][0-9]{0,9}/head")
_BY_ID_REFUSED = re.compile(r"unadvertised object|allow-tip-sha1-in-want|allowReachableSHA1InWant")


class Unknown(Exception):
    """The mirror cannot answer; the message is the (credential-free) reason."""


class FinalUnknown(Unknown):
    """An answer about the push itself: another URL of the same repository would say the same."""


class NoRemoteRef(Unknown):
    def __init__(self, message: str, ref: str):
        super().__init__(message)
        self.ref = ref


#: The one line a missing git gives: on the job, in the log and in `cibridge explain`.
GIT_MISSING = ("the git mirror needs the `git` command, which is not on PATH: install git (or "
               "set GIT_PYTHON_GIT_EXECUTABLE to it)")


def gitpython():
    """GitPython, imported where a mirror is used and nowhere else: `cibridge --help`, `check`
    and everything that needs no mirror run on a host without git. Raises `FinalUnknown` with
    GIT_MISSING (one line) when git cannot be run."""
    try:
        import git
    except ImportError:          # GitPython refuses to import without a git executable
        raise FinalUnknown(GIT_MISSING) from None
    return git


class Session:
    """One resolution inside a locked mirror: the git calls, with one deadline for the network."""

    def __init__(self, repo: git.Repo, env: dict[str, str], shown: str, timeout: float,
                 event: Event):
        self.repo, self.env, self.shown, self.timeout, self.event = repo, env, shown, timeout, event
        self.deadline = time.monotonic() + timeout
        self.fetched = False
        self.ref = event.ref
        if event.is_pull:
            if not _PULL_REF.fullmatch(self.ref):
                raise FinalUnknown(f"ref {event.ref[:200]!r} is not a pull request's ref")
        elif not event.is_branch or branch_or_tag_problem(self.ref) is not None:
            raise FinalUnknown(f"ref {event.ref[:200]!r} is not a branch name git accepts")

    def _git(self, cmd: str, *args: str, timeout: float | None = None) -> tuple[int, bytes, str]:
        return getattr(self.repo.git, cmd)(
            *args, with_extended_output=True, with_exceptions=False, stdout_as_string=False,
            kill_after_timeout=timeout or self.timeout, env=self.env)

    def _ok(self, cmd: str, *args: str) -> bool:
        return self._git(cmd, *args)[0] == 0

    def _out(self, cmd: str, *args: str) -> bytes:
        status, out, err = self._git(cmd, *args)
        if status:
            raise Unknown(f"git {cmd.replace('_', '-')} failed in the mirror of {self.shown}: "
                           f"{redact(err.strip())}")
        return out

    def has(self, sha: str) -> bool:
        return self._ok("cat_file", "-e", f"{sha}^{{commit}}")

    def shallow(self) -> bool:
        return self._out("rev_parse", "--is-shallow-repository").strip() == b"true"

    def _network(self, cmd: str, *args: str) -> tuple[int, bytes, str]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Unknown(f"fetching from {self.shown} timed out after {self.timeout:g}s")
        status, out, err = self._git(cmd, *args, timeout=left)
        err = redact(err.strip())
        if status and err.startswith("Timeout:"):   # GitPython's kill_after_timeout message
            raise Unknown(f"fetching from {self.shown} timed out after {self.timeout:g}s")
        return status, out, err

    def fetch(self, *args: str) -> str:
        """Fetch, returning git's error text ('' on success)."""
        status, _, err = self._network("fetch", "--no-tags", "--no-write-fetch-head", "--quiet",
                                       *args)
        if status == 0:
            self.fetched = True
            return ""
        return err or f"git fetch exited with {status}"

    def _fail(self, err: str) -> Unknown:
        if m := _GONE.search(err):
            sha = m["sha"]
            if sha == self.event.before.lower():
                forced = "after a force push " if self.event.forced else ""
                # Final: the host answered for the repository; its other URLs would say the same.
                return FinalUnknown(f"before {sha[:12]} is no longer on {self.shown} {forced}"
                                "(nothing to diff against)")
            return Unknown(f"commit {sha[:12]} is not on {self.shown}")
        if m := re.search(r"couldn't find remote ref (\S+)", err):
            return NoRemoteRef(f"{m[1][:200]} is not on {self.shown}", m[1])
        return Unknown(f"fetch from {self.shown} failed: {err.splitlines()[-1] if err else '?'}")

    def ensure(self, shas: list[str], *, history: bool, extra_refs: tuple[str, ...] = ()) -> None:
        """Make `shas` present (with full history when `history`), fetching by id, or failing
        that (servers that refuse unadvertised objects), the pushed branch with its history."""
        refspecs = [f"+{r}:{r}" for r in extra_refs]
        missing = [s for s in shas if not self.has(s)]
        if not missing and not refspecs:
            return
        shallow = self.shallow()
        if history:
            depth = ["--unshallow"] if shallow else []
        else:
            empty = not self._out("for_each_ref", "--count=1").strip()
            depth = ["--depth=1"] if shallow or empty else []
        err = self.fetch(*depth, "--end-of-options", "origin", *missing, *refspecs)
        if err and not _BY_ID_REFUSED.search(err):
            raise self._fail(err)
        missing = [s for s in missing if not self.has(s)]
        if not missing:
            return
        if not err:
            raise Unknown(f"fetch from {self.shown} did not bring {missing[0][:12]}")
        err = self.fetch(*(["--unshallow"] if self.shallow() else []), "--end-of-options", "origin",
                         f"+{self.ref}:{self.ref}", *refspecs)
        if err:
            raise self._fail(err)
        for sha in missing:
            if not self.has(sha):
                raise self._fail(f"not our ref {sha}")

    def diff(self, base: str, head: str) -> frozenset[str]:
        return _paths(self._out("diff", "--no-renames", "--no-ext-diff", "--name-only", "-z",
                                "--end-of-options", base, head, "--"))

    def all_files(self, head: str) -> frozenset[str]:
        return _paths(self._out("ls_tree", "-r", "-z", "--name-only", "--full-tree",
                                "--end-of-options", head))

    def existing_branch(self, before: str, after: str):
        self.ensure([before, after], history=False)
        return self.diff(before, after), f"git diff {before[:12]}..{after[:12]}"

    def default_branch(self) -> str | None:
        if name := self.event.default_branch:
            return name if branch_or_tag_problem(f"refs/heads/{name}") is None else None
        status, out, _ = self._network("ls_remote", "--symref", "origin", "HEAD")
        m = re.match(rb"ref: refs/heads/(\S+)\tHEAD", out) if status == 0 else None
        name = m[1].decode("utf-8", "replace") if m else None
        return name if name and branch_or_tag_problem(f"refs/heads/{name}") is None else None

    def new_branch(self, after: str):
        default = self.default_branch()
        if default is None or f"refs/heads/{default}" == self.ref:
            self.ensure([after], history=False)
            why = ("the new branch is the default branch" if default else
                   "a new branch and no default branch known")
            return self.all_files(after), f"{why}: every file in {after[:12]} counts"
        default_ref = f"refs/heads/{default}"
        try:
            self.ensure([after], history=True, extra_refs=(default_ref,))
        except NoRemoteRef as exc:
            if exc.ref != default_ref:
                raise
            self.ensure([after], history=False)
            return (self.all_files(after), f"the default branch '{default}' is not on "
                    f"{self.shown}: every file in {after[:12]} counts")
        status, out, _ = self._git("merge_base", "--end-of-options", after, default_ref)
        base = out.decode().strip()
        if status or not SHA.fullmatch(base):
            return (self.all_files(after), f"a new branch with no history in common with "
                    f"'{default}': every file in {after[:12]} counts")
        return (self.diff(base, after),
                f"a new branch: git diff {base[:12]}..{after[:12]} (merge base with '{default}')")

    def pull_request(self, head: str, base_branch: str):
        """GitHub Actions' three-dot diff: the files changed between the merge base of the base
        branch and the head, and the head. Fetches the pull ref (the base repository serves a
        fork's head there) and the base branch, with their history (the merge base needs it)."""
        base_ref = f"refs/heads/{base_branch}"
        if not base_branch or branch_or_tag_problem(base_ref) is not None:
            raise FinalUnknown(f"base branch {base_branch[:200]!r} is not a branch name git accepts")
        err = self.fetch(*(["--unshallow"] if self.shallow() else []), "--end-of-options", "origin",
                         f"+{self.ref}:{self.ref}", f"+{base_ref}:{base_ref}")
        if err:
            raise self._fail(err)
        if not self.has(head):
            # The pull request moved on since this event: its head by id, if the host serves it.
            err = self.fetch("--end-of-options", "origin", head)
            if err or not self.has(head):
                raise self._fail(err or f"not our ref {head}")
        status, out, _ = self._git("merge_base", "--end-of-options", head, base_ref)
        base = out.decode().strip()
        if status or not SHA.fullmatch(base):
            return (self.all_files(head), f"a pull request with no history in common with "
                    f"'{base_branch}': every file in {head[:12]} counts")
        return (self.diff(base, head), f"git diff {base_ref[len('refs/heads/'):]}...{head[:12]} "
                f"(merge base {base[:12]})")

    def finish(self, after: str) -> None:
        # The branch ref keeps the pushed commit from gc and offers it as a "have" next time.
        self._git("update_ref", "--no-deref", self.ref, after)
        if self.fetched:
            status, _, err = self._git("gc", "--auto", "--quiet")
            if status:
                log.warning("git gc --auto in the mirror of %s failed: %s", self.shown, redact(err),
                            extra={"delivery": self.event.delivery_id})


def _paths(out: bytes) -> frozenset[str]:
    # -z output is verbatim bytes; a name that is not UTF-8 keeps its shape with U+FFFD.
    return frozenset(p.decode("utf-8", "replace") for p in out.split(b"\0") if p)
