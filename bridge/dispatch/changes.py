"""Changed files for a push: the dispatcher's step before it starts a `NeedsFiles` job.

Input: an `Event` and its source's config. Output: a `FileResolution` from the chain: the payload
when its lists are provably complete (files.py), else a git mirror (mirror.py), else "unknown"
with the reason; and the dispatcher's path decider built on it.

The payload and the mirror can disagree: the union of the per-commit lists contains a file that
was changed and then changed back, the diff does not. Whenever the mirror answers, the diff wins.
"""
from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from bridge.dispatch.mirror import Mirrors
from bridge.events import Event
from bridge.payload_files import FileResolution, files_from_payload
from bridge.providers import clone_user
from bridge.providers.clone import _userinfo
from bridge.providers.clone import describe as describe_hosts
from bridge.rules import decide_paths


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


def make_path_decider(state_dir, config):
    """decide_paths(claimed_job) for the dispatcher: changed files via the mirror, then the rule's filters."""
    mirrors = Mirrors.for_settings(state_dir, config.settings)

    def decide(job):
        event = job.event
        resolution = resolve_for_source(event, mirrors, config.sources.get(event.source))
        return decide_paths(job.path_filter or {}, resolution)

    return decide
