"""Changed files for a push: the dispatcher's step before it starts a `NeedsFiles` job.

Input: an `Event` (plus, for the mirror, a source's configured clone URL). Output: a
`FileResolution` naming the files and the source that decided: the payload when its lists are
provably complete, else a bare git mirror under the state directory (GitPython, imported only
here, when a mirror is used), fetched from the first clone URL that answers: the source's
`clone_url`, then the payload's URLs whose host the source allows (`clone_hosts`), else
"unknown" with the reason.

Semantics follow GitHub Actions. An existing branch: the two-dot diff `before..after`, renames
counted as old and new path. A new branch: the diff against the merge base with the default
branch (the parent of the oldest pushed commit not on it). When no default branch can be found,
when the new branch *is* the default branch, or when it shares no history with it, every file in
`after` counts as changed: too many files only makes a `paths:` rule run, as GitHub Actions does
when it cannot compute a diff. A deleted ref changed no files; path filters do not apply to tags.

The payload and the mirror can disagree: the union of the per-commit lists contains a file that
was changed and then changed back, the diff does not. Whenever the mirror answers, the diff wins.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from bridge.events import Event
from bridge.policies import MirrorPolicy
from bridge.providers import clone_user, commit_cap, get_provider
from bridge.providers.clone import (CONFIG_SCHEMES, PAYLOAD_SCHEMES, _userinfo, _without_credentials,
                                   expand_clone_url, host_refusal, redact, url_refusal)
from bridge.providers.clone import describe as describe_hosts
from bridge.refnames import branch_or_tag_problem
from bridge.rules import decide_paths

if TYPE_CHECKING:
    import git

log = logging.getLogger("bridge.changes")

_DEFAULTS = MirrorPolicy()

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# The server does not have the object (protocol v2 serves any object it has).
_GONE = re.compile(r"not our ref (?P<sha>[0-9a-f]{40,64})")
# The server has objects but will not hand them out by id (protocol v0 without
# uploadpack.allowAnySHA1InWant): fetch the branch instead.
_BY_ID_REFUSED = re.compile(r"unadvertised object|allow-tip-sha1-in-want|allowReachableSHA1InWant")
_META = "bridge-mirror.json"


@dataclass(frozen=True)
class FileResolution:
    """The files a push changed and who decided. `files` is None when it could not be determined."""
    files: frozenset[str] | None
    source: str                 # "payload" | "mirror" | "none" (deleted ref / tag) | "unknown"
    reason: str                 # why this source decided, or why the files are unknown


class _Unknown(Exception):
    """The mirror cannot answer; the message is the (credential-free) reason."""


class _Final(_Unknown):
    """An answer about the push itself: another URL of the same repository would say the same."""


class _NoRemoteRef(_Unknown):
    def __init__(self, message: str, ref: str):
        super().__init__(message)
        self.ref = ref


#: The one line a missing git gives: on the job, in the log and in `cibridge explain`.
GIT_MISSING = ("the git mirror needs the `git` command, which is not on PATH: install git (or "
               "set GIT_PYTHON_GIT_EXECUTABLE to it)")


def gitpython():
    """GitPython, imported where a mirror is used and nowhere else: `cibridge --help`, `check`
    and everything that needs no mirror run on a host without git. Raises `_Final` with
    GIT_MISSING (one line) when git cannot be run."""
    try:
        import git
    except ImportError:          # GitPython refuses to import without a git executable
        raise _Final(GIT_MISSING) from None
    return git


def mirror_key(url: str) -> str:
    """The mirror directory's name for `url`: sha256 of the URL without credentials."""
    return hashlib.sha256(_without_credentials(url).encode()).hexdigest()


# --- the chain ----------------------------------------------------------------------------------

def _not_applicable(event: Event) -> FileResolution | None:
    if event.is_tag:
        return FileResolution(None, "none", "path filters do not apply to tags")
    if event.deleted or event.kind == "delete" or _is_zero(event.after):
        return FileResolution(frozenset(), "none", "the ref was deleted: no files changed")
    return None


def _is_local(url: str) -> bool:
    return url.startswith("/") or url[:7].lower() == "file://"


def _is_zero(sha: str) -> bool:
    return bool(sha) and set(sha) == {"0"}


def payload_incomplete(event: Event) -> str | None:
    """Why the payload's per-commit file lists cannot be trusted, or None when they can."""
    if not event.commits_complete:
        return "the payload's commit list is capped by the host"
    if (limit := commit_cap(event.provider)) is not None and len(event.commits) >= limit:
        return (f"{get_provider(event.provider).TITLE} lists at most {limit} commits and this "
                f"payload has {len(event.commits)}")
    if any(not c.has_files for c in event.commits):
        return "the payload's commits carry no file lists"
    if not event.commits:
        if event.created or _is_zero(event.before):
            return "a new branch whose payload lists no commits"
        return "the payload lists no commits (the branch may have moved backwards)"
    if event.forced:
        # The new commits' lists say nothing about what the dropped commits had changed.
        return "a forced push: the payload lists only the new commits"
    if event.changed_files() is None:
        return "the payload's file lists are incomplete"
    return None


def files_from_payload(event: Event) -> FileResolution:
    """The chain's answer without a mirror, and the ONE wording of it (the dispatcher's chain
    and `cibridge explain` both give it): no files for a tag or a deleted ref, the payload's files
    when its lists are provably complete, else source "unknown" with why they are not."""
    if (fixed := _not_applicable(event)) is not None:
        return fixed
    why = payload_incomplete(event)
    if why is None:
        return FileResolution(
            event.changed_files(), "payload",
            f"the payload lists all {len(event.commits)} pushed commits with their files")
    return FileResolution(None, "unknown", why)


def resolve_changed_files(event: Event, mirrors: Mirrors | None, *, url: str | None = None,
                          hosts: Iterable[str] = (), where: str | None = None) -> FileResolution:
    """The fallback chain: (a) the payload when provably complete, (b) the mirror, fetching
    from the configured `url` or a payload URL on one of `hosts` (`where` says whose list it
    is, for a refusal), (c) unknown.

    Never raises for a network or repository problem: those come back as source "unknown" with
    the reason, for the rule's `on_unknown_files` policy to decide.
    """
    first = files_from_payload(event)
    if first.source != "unknown":
        return first
    if mirrors is None:
        return FileResolution(None, "unknown", f"{first.reason}, and no git mirror is configured")
    found = mirrors.changed_files(event, url=url, hosts=hosts, where=where)
    return FileResolution(found.files, found.source, f"{first.reason}; {found.reason}")


def resolve_for_source(event: Event, mirrors: Mirrors | None, source) -> FileResolution:
    """`resolve_changed_files` for an event of `source` (a SourceConfig; None when the source
    is gone from rules.yaml): its `clone_url` first, payload URLs only on its `clone_hosts`.
    The dispatcher and `cibridge explain --resolve-files` both call this."""
    hosts = tuple(getattr(source, "clone_hosts", ()) or ())
    where = describe_hosts(getattr(source, "name", None), hosts,
                           getattr(source, "clone_hosts_default", True))
    url = source_clone_url(source, event) if source is not None else None
    return resolve_changed_files(event, mirrors, url=url, hosts=hosts, where=where)


def source_clone_url(source, event: Event) -> str | None:
    """The URL the mirror tries first for a source: its `clone_url` (with the source's
    `clone_token` put in as https userinfo; URLs are redacted wherever shown; a `${repo}` in it
    is filled in by `Mirrors.changed_files`), else None: the event's own URLs only. The token
    never goes to a URL the payload named: whoever can sign a delivery could otherwise point it
    at a host of their own and collect the token."""
    options = getattr(source, "options", None) or {}
    url = options.get("clone_url")
    token = options.get("clone_token")
    if url and token and url.startswith("https://") and _userinfo(url) is None:
        user = clone_user(getattr(source, "provider", ""))
        url = f"https://{user}:{quote(token, safe='')}@{url[len('https://'):]}"
    return url


# --- mirrors ------------------------------------------------------------------------------------

class Mirrors:
    """Bare git mirrors, one per repository URL, under `root`, shared by every dispatcher on
    the host: an exclusive `flock` on `<mirror>.lock` keeps two fetches out of one mirror.

    Fetches take the pushed commits only (`--depth=1` while the mirror is shallow or new; new
    branches need history for the merge base and unshallow it), within `fetch_timeout` seconds
    per clone URL tried. A configured URL may use any of `allowed_schemes`; URLs from the
    payload only `payload_schemes` (enforced again through `GIT_ALLOW_PROTOCOL`, and
    `protocol.ext.allow=never`). `payload_schemes` is wider only in tests that serve payload
    URLs over file:// or git://.
    Clone URLs may carry credentials: they reach git through the environment (never argv, a
    log line or the disk) and every URL shown anywhere is redacted. After a fetch, mirrors
    unused for `max_age` seconds and the least recently used beyond `max_bytes` are evicted.
    `env` is added to git's environment (e.g. `GIT_SSH_COMMAND` with the service's key).
    """

    def __init__(self, root: Path, *, fetch_timeout: float = _DEFAULTS.fetch_timeout,
                 max_bytes: int = _DEFAULTS.max_size, max_age: float = _DEFAULTS.max_age,
                 allowed_schemes=CONFIG_SCHEMES, payload_schemes=PAYLOAD_SCHEMES,
                 env: Mapping[str, str] | None = None, now=time.time):
        # Absolute: git runs inside the mirror with GIT_DIR set, a relative path would not be found.
        self.root = Path(os.path.abspath(root))
        self.fetch_timeout = fetch_timeout
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.allowed_schemes = tuple(allowed_schemes)
        self.payload_schemes = tuple(payload_schemes)
        self.now = now
        self._env = dict(env or {})
        self._env["GIT_TERMINAL_PROMPT"] = "0"      # a missing credential fails, never waits
        if not any(k in self._env or k in os.environ for k in ("GIT_SSH_COMMAND", "GIT_SSH")):
            self._env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"

    @classmethod
    def for_settings(cls, state_dir, settings=None, **kwargs) -> Mirrors:
        """The mirrors under `<state_dir>/mirrors` with the limits of `settings.mirrors`."""
        policy = getattr(settings, "mirrors", None) or _DEFAULTS
        return cls(Path(state_dir) / "mirrors", fetch_timeout=policy.fetch_timeout,
                   max_bytes=policy.max_size, max_age=policy.max_age, **kwargs)

    def _git_env(self, url: str, schemes: Iterable[str] | None = None) -> dict[str, str]:
        # GIT_CONFIG_COUNT entries reach git as configuration without showing in argv (ps, the
        # GitPython debug log) or being written into the mirror's config file.
        env = dict(self._env)
        env["GIT_ALLOW_PROTOCOL"] = ":".join(self.allowed_schemes if schemes is None else schemes)
        first = int(env.get("GIT_CONFIG_COUNT") or os.environ.get("GIT_CONFIG_COUNT") or 0)
        pairs = [("protocol.ext.allow", "never"), ("protocol.fd.allow", "never"),
                 ("gc.autoDetach", "false"),  # a background gc would run outside our lock
                 ("fetch.unpackLimit", "1"),  # keep packs: 50 MB as loose objects is slow
                 ("remote.origin.url", url)]
        for i, (key, value) in enumerate(pairs, first):
            env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
        env["GIT_CONFIG_COUNT"] = str(first + len(pairs))
        return env

    def candidates(self, event: Event, url: str | None = None, hosts: Iterable[str] = (),
                   where: str | None = None) -> list[tuple[str, str | None]]:
        """The clone URLs to try, in order, each with why it is refused (or None): the
        configured `url` first (`${repo}` filled in; any of `allowed_schemes`), then the
        event's own URLs (GitHub: clone_url, ssh_url; GitLab: git_http_url, git_ssh_url) with
        `payload_schemes` only and only on one of `hosts` (the source's clone_hosts; `where`
        describes them in a refusal): a payload never picks the host the bridge connects to.
        A URL already listed (credentials aside) is not repeated."""
        hosts = tuple(hosts)
        if where is None:
            where = f"allowed hosts: {', '.join(hosts) or 'none'}"
        found: list[tuple[str, str | None]] = []
        seen: set[str] = set()

        def add(u: str, refusal: str | None) -> None:
            # The refusal comes first: a malformed URL is only refused, never parsed further.
            key = u if refusal is not None else _without_credentials(u)
            if key not in seen:
                seen.add(key)
                found.append((u, refusal))

        if url is not None:
            url, why = expand_clone_url(url, event.repo)
            add(url, why or url_refusal(url, self.allowed_schemes))
        for u in event.clone_urls:
            refusal = url_refusal(u, self.payload_schemes)
            if refusal is None and not _is_local(u):    # file:// only where a test allows it
                refusal = host_refusal(u, redact(u)[:200], hosts, where)
            add(u, refusal)
        return found

    def changed_files(self, event: Event, *, url: str | None = None, hosts: Iterable[str] = (),
                      where: str | None = None) -> FileResolution:
        """Fetch the pushed commits into a mirror and diff them, trying each of `candidates()`
        until one answers (a private repository: https without credentials fails at once, the
        ssh URL with the service user's key answers). Source "mirror" with the URL that
        answered (and why the ones before it did not), or "unknown" with every URL's reason
        (refused URL, fetch failed or timed out), or at once with the push's own problem (not
        a commit id, `before` gone after a force push)."""
        if (fixed := _not_applicable(event)) is not None:
            return fixed
        extra = {"delivery": event.delivery_id}
        candidates = self.candidates(event, url, hosts, where)
        if any(refusal is None for _, refusal in candidates):
            try:
                gitpython()
            except _Unknown as exc:
                log.error("changed files unknown: %s", exc, extra=extra)
                return FileResolution(None, "unknown", str(exc))
        failed: list[str] = []
        for candidate, refusal in candidates:
            if refusal is not None:
                log.warning("changed files: %s", refusal, extra=extra)
                failed.append(refusal)
                continue
            started = time.monotonic()
            try:
                files, how = self._from_mirror(event, candidate)
            except _Final as exc:
                log.warning("changed files unknown: %s", exc, extra=extra)
                return FileResolution(None, "unknown", "; ".join([*failed, str(exc)]))
            except _Unknown as exc:
                log.warning("changed files: %s", exc, extra=extra)
                failed.append(str(exc))
                continue
            log.info("%d changed files from the mirror of %s in %.2fs", len(files),
                     redact(candidate), time.monotonic() - started, extra=extra)
            if failed:
                how += f" (tried first: {'; '.join(failed)})"
            return FileResolution(files, "mirror", how)
        if not failed:
            return FileResolution(None, "unknown", "the event carries no clone URL")
        log.warning("changed files unknown: no clone URL answered", extra=extra)
        return FileResolution(None, "unknown", "; ".join(failed))

    def _from_mirror(self, event: Event, url: str) -> tuple[frozenset[str], str]:
        """The files from the mirror of `url` (refusal already checked); raises `_Unknown`."""
        shown = redact(url)
        path = self.root / mirror_key(url)
        # git may speak only what this URL needs: an https or ssh URL gets no file:// or git://.
        schemes = self.allowed_schemes if url_refusal(url, self.payload_schemes) else \
            self.payload_schemes
        git = gitpython()
        try:
            with self._locked(path, wait=3 * self.fetch_timeout):
                files, how, fetched = self._resolve(path, event, url, shown, schemes)
        except git.GitCommandNotFound:      # git went away since GitPython was imported
            raise _Final(GIT_MISSING) from None
        except (git.GitError, OSError) as exc:
            raise _Unknown(f"mirror of {shown} failed: {redact(_text(exc))}") from None
        if fetched:
            try:
                self._evict(self.max_bytes, self.max_age, keep=path)
            except OSError as exc:
                log.warning("pruning mirrors failed: %s", exc, extra={"delivery": event.delivery_id})
        return files, how

    def _resolve(self, path: Path, event: Event, url: str, shown: str, schemes: Iterable[str]):
        after, before = event.after.lower(), event.before.lower()
        if not _SHA.fullmatch(after):
            raise _Final(f"after {event.after[:80]!r} is not a commit id")
        new_branch = event.created or _is_zero(before)
        if not new_branch and not _SHA.fullmatch(before):
            raise _Final(f"before {event.before[:80]!r} is not a commit id")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = False
        git = gitpython()
        try:
            repo = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            # New, or left half-made by a crash: the mirror is only a cache, start it afresh.
            shutil.rmtree(path, ignore_errors=True)
            repo = git.Repo.init(path, bare=True, mkdir=True,
                                 **({"object_format": "sha256"} if len(after) == 64 else {}))
            created = True
        session = None
        try:
            with repo:
                self._write_meta(path, shown)
                # GIT_DIR: a damaged mirror must never make git search upwards into another repo.
                env = {**self._git_env(url, schemes), "GIT_DIR": str(path)}
                session = _Session(repo, env, shown, self.fetch_timeout, event)
                if new_branch:
                    files, how = session.new_branch(after)
                else:
                    files, how = session.existing_branch(before, after)
                session.finish(after)
        except BaseException:
            if created and not (session and session.fetched):
                # A mirror that never held anything (a URL that does not answer) is no cache.
                shutil.rmtree(path, ignore_errors=True)
            raise
        return files, f"{how} in the mirror of {shown}", session.fetched

    # --- bookkeeping ---

    def _write_meta(self, path: Path, shown: str) -> None:
        tmp = path / f"{_META}.tmp"
        tmp.write_text(json.dumps({"url": shown, "last_used": self.now()}))
        tmp.replace(path / _META)

    def list(self) -> list[dict]:
        """Every mirror: url (credentials redacted), path, size in bytes, last used (epoch
        seconds), most recently used first."""
        found = []
        if not self.root.is_dir():
            return found
        for path in self.root.iterdir():
            if not (path.is_dir() and re.fullmatch(r"[0-9a-f]{64}", path.name)):
                continue
            try:
                meta = json.loads((path / _META).read_text())
                url, last_used = str(meta["url"]), float(meta["last_used"])
            except (OSError, ValueError, TypeError, KeyError):
                url, last_used = "?", 0.0      # never finished its first use: first to go
            found.append({"url": url, "path": str(path), "size": _size(path),
                          "last_used": last_used})
        return sorted(found, key=lambda m: m["last_used"], reverse=True)

    def prune(self, *, max_bytes=None, max_age=None) -> list[str]:
        """Evict mirrors unused for longer than `max_age` seconds, then the least recently used
        until all fit in `max_bytes`. Mirrors in use are skipped. Returns the redacted URLs."""
        return self._evict(self.max_bytes if max_bytes is None else max_bytes,
                           self.max_age if max_age is None else max_age, keep=None)

    def _evict(self, max_bytes: int, max_age: float, keep: Path | None) -> list[str]:
        mirrors = sorted(self.list(), key=lambda m: m["last_used"])
        total = sum(m["size"] for m in mirrors)
        evicted = []
        for m in mirrors:
            path = Path(m["path"])
            if path == keep or (self.now() - m["last_used"] <= max_age and total <= max_bytes):
                continue
            try:
                with self._locked(path, wait=0) as lock_path:
                    shutil.rmtree(path)
                    # Waiters holding the old file notice the unlink and retry (see _locked).
                    lock_path.unlink()
            except _Unknown:
                continue                # in use right now: certainly not idle
            total -= m["size"]
            evicted.append(m["url"])
            log.info("evicted mirror of %s (%d bytes)", m["url"], m["size"])
        return evicted

    @contextlib.contextmanager
    def _locked(self, path: Path, *, wait: float) -> Iterator[Path]:
        lock_path = Path(f"{path}.lock")
        deadline = time.monotonic() + wait
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise _Unknown(
                                f"the mirror {path.name} stayed busy for {wait:g}s") from None
                        time.sleep(0.02)
                try:
                    current = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
                if current:
                    yield lock_path
                    return
            finally:
                os.close(fd)            # releases the lock


class _Session:
    """One resolution inside a locked mirror: the git calls, with one deadline for the network."""

    def __init__(self, repo: git.Repo, env: dict[str, str], shown: str, timeout: float,
                 event: Event):
        self.repo, self.env, self.shown, self.timeout, self.event = repo, env, shown, timeout, event
        self.deadline = time.monotonic() + timeout
        self.fetched = False
        self.ref = event.ref
        if not event.is_branch or branch_or_tag_problem(self.ref) is not None:
            raise _Final(f"ref {event.ref[:200]!r} is not a branch name git accepts")

    def _git(self, cmd: str, *args: str, timeout: float | None = None) -> tuple[int, bytes, str]:
        return getattr(self.repo.git, cmd)(
            *args, with_extended_output=True, with_exceptions=False, stdout_as_string=False,
            kill_after_timeout=timeout or self.timeout, env=self.env)

    def _ok(self, cmd: str, *args: str) -> bool:
        return self._git(cmd, *args)[0] == 0

    def _out(self, cmd: str, *args: str) -> bytes:
        status, out, err = self._git(cmd, *args)
        if status:
            raise _Unknown(f"git {cmd.replace('_', '-')} failed in the mirror of {self.shown}: "
                           f"{redact(err.strip())}")
        return out

    def has(self, sha: str) -> bool:
        return self._ok("cat_file", "-e", f"{sha}^{{commit}}")

    def shallow(self) -> bool:
        return self._out("rev_parse", "--is-shallow-repository").strip() == b"true"

    def _network(self, cmd: str, *args: str) -> tuple[int, bytes, str]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Unknown(f"fetching from {self.shown} timed out after {self.timeout:g}s")
        status, out, err = self._git(cmd, *args, timeout=left)
        err = redact(err.strip())
        if status and err.startswith("Timeout:"):   # GitPython's kill_after_timeout message
            raise _Unknown(f"fetching from {self.shown} timed out after {self.timeout:g}s")
        return status, out, err

    def fetch(self, *args: str) -> str:
        """Fetch, returning git's error text ('' on success)."""
        status, _, err = self._network("fetch", "--no-tags", "--no-write-fetch-head", "--quiet",
                                       *args)
        if status == 0:
            self.fetched = True
            return ""
        return err or f"git fetch exited with {status}"

    def _fail(self, err: str) -> _Unknown:
        if m := _GONE.search(err):
            sha = m["sha"]
            if sha == self.event.before.lower():
                forced = "after a force push " if self.event.forced else ""
                # Final: the host answered for the repository; its other URLs would say the same.
                return _Final(f"before {sha[:12]} is no longer on {self.shown} {forced}"
                                "(nothing to diff against)")
            return _Unknown(f"commit {sha[:12]} is not on {self.shown}")
        if m := re.search(r"couldn't find remote ref (\S+)", err):
            return _NoRemoteRef(f"{m[1][:200]} is not on {self.shown}", m[1])
        return _Unknown(f"fetch from {self.shown} failed: {err.splitlines()[-1] if err else '?'}")

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
            raise _Unknown(f"fetch from {self.shown} did not bring {missing[0][:12]}")
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
        except _NoRemoteRef as exc:
            if exc.ref != default_ref:
                raise
            self.ensure([after], history=False)
            return (self.all_files(after), f"the default branch '{default}' is not on "
                    f"{self.shown}: every file in {after[:12]} counts")
        status, out, _ = self._git("merge_base", "--end-of-options", after, default_ref)
        base = out.decode().strip()
        if status or not _SHA.fullmatch(base):
            return (self.all_files(after), f"a new branch with no history in common with "
                    f"'{default}': every file in {after[:12]} counts")
        return (self.diff(base, after),
                f"a new branch: git diff {base[:12]}..{after[:12]} (merge base with '{default}')")

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


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _text(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def make_path_decider(state_dir, config):
    """decide_paths(claimed_job) for the dispatcher: changed files via the mirror, then the rule's filters."""
    mirrors = Mirrors.for_settings(state_dir, config.settings)

    def decide(job):
        event = job.event
        resolution = resolve_for_source(event, mirrors, config.sources.get(event.source))
        return decide_paths(job.path_filter or {}, resolution)

    return decide
