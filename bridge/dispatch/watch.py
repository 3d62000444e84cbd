"""Reconcile, the branch-head watch: each watched branch's head and each tag on the host compared
with the newest sha the bridge accepted for that (repo, ref); where the host is ahead and no stored
delivery covers it, a push is synthesized (before = the last known sha, no commit list) and goes
through the store's ingest like any delivery, so the rules decide and a late real delivery of the
same push is a duplicate.

Input: a `Run` and the source's `WatchSpec`s. Output: synthesized deliveries (`via: reconcile`),
lines in the run's report, the refs seen kept in the store's marks (the first run only records
them: a baseline, nothing is built for refs that were there before the watch).
"""
from __future__ import annotations

from bridge.events import ZERO_SHA
from bridge.globs import PatternList


def watch_repo(run, repo: str, specs: list, *, waiting: bool) -> None:
    """One repository's watched refs. `waiting`: a redelivery asked of the host for this
    repository has not arrived yet; the heads are compared at the next run."""
    src = run.source
    fold = True     # every host's repository names ignore case (Event.repo_case_insensitive)
    seen_key = f"watch:{src.name}:{repo.lower() if fold else repo}"
    host = _host_refs(run, repo, specs)
    if waiting:
        run.progress(f"{src.name} {repo}: {len(host)} watched refs; redeliveries on their way, "
                     "heads compared next run")
        return
    seen = run.store.get_mark(seen_key)
    stored_repo, key_head, heads = run.store.ref_heads(repo, fold=fold)
    if seen is None:
        run.progress(f"{src.name} {repo}: {len(host)} watched refs recorded (first run: a "
                     "baseline, nothing built for refs already there)")
        if not run.dry_run:
            run.marks[seen_key] = {ref: r.sha for ref, r in host.items()}
        return
    behind = 0
    for ref, r in sorted(host.items()):
        afters = heads.get(ref, [])
        if r.sha in afters:
            continue                      # a stored delivery covers this head
        known = afters[0] if afters else seen.get(ref)
        if known == r.sha:
            continue
        behind += 1
        reason = _reason(ref, known)
        commit = r.commit or (r.sha if run.dry_run else run.client.peel(repo, r.sha))
        outcome = run.synthesize(stored_repo or repo, ref, before=known or ZERO_SHA, after=r.sha,
                                 sha=commit, reason=reason, key_head=key_head)
        run.found(repo, ref, reason, outcome,
                  f"{(known or ZERO_SHA)[:12]}..{r.sha[:12]}" + (" (new)" if known is None else ""))
    run.progress(f"{src.name} {repo}: {len(host)} watched refs, {behind} ahead of the deliveries")
    if not run.dry_run:
        run.marks[seen_key] = {ref: r.sha for ref, r in host.items()}


def _host_refs(run, repo: str, specs: list) -> dict:
    """ref -> HostRef of the branches and tags any of `specs` watches."""
    branches = [PatternList(list(s.branches)) for s in specs if s.branches]
    tags = [PatternList(list(s.tags)) for s in specs if s.tags]
    out = {}
    for kind, lists in (("heads", branches), ("tags", tags)):
        if not lists:
            continue
        prefix = f"refs/{kind}/"
        for r in run.client.refs(repo, kind):
            name = r.ref[len(prefix):] if r.ref.startswith(prefix) else None
            if name and any(p.matches(name) for p in lists):
                out[r.ref] = r
    return out


def _reason(ref: str, known: str | None) -> str:
    if ref.startswith("refs/tags/"):
        return "new_tag" if known is None else "moved_tag"
    return "new_branch" if known is None else "branch_head"
