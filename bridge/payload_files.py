"""Changed files from the payload alone: the first link of the dispatcher's file chain, and the one
wording of it, below both sides of the queue (the web's explain trace gives it too).

Input: an `Event`. Output: a `FileResolution`: no files for a tag or a deleted ref, the payload's
files when its per-commit lists are provably complete, else source "unknown" with why not.
"""
from __future__ import annotations

from dataclasses import dataclass

from bridge.events import Event
from bridge.providers import commit_cap, get_provider


@dataclass(frozen=True)
class FileResolution:
    """The files a push changed and who decided. `files` is None when it could not be determined."""
    files: frozenset[str] | None
    source: str                 # "payload" | "mirror" | "none" (deleted ref / tag) | "unknown"
    reason: str                 # why this source decided, or why the files are unknown


def not_applicable(event: Event) -> FileResolution | None:
    """The answer for a tag or a deleted ref, where there are no files to look for (else None)."""
    if event.is_tag:
        return FileResolution(None, "none", "path filters do not apply to tags")
    if event.deleted or event.kind == "delete" or is_zero(event.after):
        return FileResolution(frozenset(), "none", "the ref was deleted: no files changed")
    return None


def is_zero(sha: str) -> bool:
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
        if event.created or is_zero(event.before):
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
    if (fixed := not_applicable(event)) is not None:
        return fixed
    if event.is_pull:
        return FileResolution(None, "unknown", "a pull request's payload lists no files (they are "
                                               "the three-dot diff against its base branch)")
    why = payload_incomplete(event)
    if why is None:
        return FileResolution(
            event.changed_files(), "payload",
            f"the payload lists all {len(event.commits)} pushed commits with their files")
    return FileResolution(None, "unknown", why)
