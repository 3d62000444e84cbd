"""Changed files from a git mirror: the bare mirrors under the state directory and which URL to fetch.

Input: an `Event`, and a source's configured clone URL and allowed hosts. Output: a `FileResolution`
from the first clone URL that answers (the configured one, then the payload's URLs on an allowed
host), or "unknown" with every URL's reason; and the mirrors' list, locks and eviction.
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
from pathlib import Path

from bridge.dispatch.mirror_git import (GIT_MISSING, SHA, FinalUnknown, Session, Unknown,
                                        gitpython)
from bridge.events import Event
from bridge.payload_files import FileResolution, is_zero, not_applicable
from bridge.policies import MirrorPolicy
from bridge.providers.clone import (CONFIG_SCHEMES, PAYLOAD_SCHEMES, _without_credentials,
                                   expand_clone_url, host_refusal, redact, url_refusal)

log = logging.getLogger("bridge.changes")

_DEFAULTS = MirrorPolicy()
_META = "bridge-mirror.json"


def mirror_key(url: str) -> str:
    """The mirror directory's name for `url`: sha256 of the URL without credentials."""
    return hashlib.sha256(_without_credentials(url).encode()).hexdigest()


def _is_local(url: str) -> bool:
    return url.startswith("/") or url[:7].lower() == "file://"


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
        if (fixed := not_applicable(event)) is not None:
            return fixed
        extra = {"delivery": event.delivery_id}
        candidates = self.candidates(event, url, hosts, where)
        if any(refusal is None for _, refusal in candidates):
            try:
                gitpython()
            except Unknown as exc:
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
            except FinalUnknown as exc:
                log.warning("changed files unknown: %s", exc, extra=extra)
                return FileResolution(None, "unknown", "; ".join([*failed, str(exc)]))
            except Unknown as exc:
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
        """The files from the mirror of `url` (refusal already checked); raises `Unknown`."""
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
            raise FinalUnknown(GIT_MISSING) from None
        except (git.GitError, OSError) as exc:
            raise Unknown(f"mirror of {shown} failed: {redact(_text(exc))}") from None
        if fetched:
            try:
                self._evict(self.max_bytes, self.max_age, keep=path)
            except OSError as exc:
                log.warning("pruning mirrors failed: %s", exc, extra={"delivery": event.delivery_id})
        return files, how

    def _resolve(self, path: Path, event: Event, url: str, shown: str, schemes: Iterable[str]):
        after, before = event.after.lower(), event.before.lower()
        if not SHA.fullmatch(after):
            raise FinalUnknown(f"after {event.after[:80]!r} is not a commit id")
        new_branch = event.created or is_zero(before)
        if not event.is_pull and not new_branch and not SHA.fullmatch(before):
            raise FinalUnknown(f"before {event.before[:80]!r} is not a commit id")
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
                session = Session(repo, env, shown, self.fetch_timeout, event)
                if event.is_pull:
                    files, how = session.pull_request(after, event.base_ref)
                elif new_branch:
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
            except Unknown:
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
                            raise Unknown(
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


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _text(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
