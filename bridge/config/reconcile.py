"""Configuration of reconcile: a source's `reconcile:` (API token, hooks whose delivery logs are read)
and `watch:` list, rules' `watch: true`, and `settings.reconcile`, checked into values.

Input: the parsed mappings with their lines, the checked sources and compiled rules. Output:
`ReconcileConfig`, `WatchSpec`s and `ReconcilePolicy`, each problem added to the load's `Problems`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from bridge.config import secrets as secret_refs
from bridge.config.keys import HOOK_KEYS, RECONCILE_KEYS, RECONCILE_SETTINGS_KEYS, WATCH_KEYS
from bridge.config.problems import as_mapping, resolve_secret
from bridge.config.yamlload import LineDict, LineList
from bridge.errors import SecretError
from bridge.globs import validate_patterns
from bridge.policies import parse_duration


@dataclass(frozen=True)
class HookRef:
    """One webhook whose delivery log reconcile reads: a repository's (GitHub `repo`, GitLab
    `project`) or a GitHub organization's (`org`), by the host's hook id."""
    id: int
    repo: str | None = None
    org: str | None = None

    @property
    def name(self) -> str:
        return f"{self.repo or 'org ' + str(self.org)} hook {self.id}"


@dataclass(frozen=True)
class ReconcileConfig:
    """A source's API access for reconcile: its `reconcile:` or, without one, its `report:`."""
    api_url: str
    token: str | None = field(repr=False)
    hooks: tuple[HookRef, ...] = ()
    timeout: float = 10.0


@dataclass(frozen=True)
class WatchSpec:
    """Refs of one repository whose heads reconcile compares with the deliveries."""
    source: str
    repo: str
    branches: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    rule: str | None = None        # the rule with `watch: true` this came from


@dataclass(frozen=True)
class ReconcilePolicy:
    """`settings.reconcile`: how often the dispatcher reconciles, how far back, how much per run."""
    interval: float = 600.0
    since: float = 86400.0
    max_redeliveries: int = 100
    enabled: bool = True


def parse_reconcile(spec, name, provider, problems, environ, default_api_url: str) -> ReconcileConfig | None:
    """A source's `reconcile: {token, api_url, hooks, timeout}`."""
    where = f"source '{name}' reconcile"
    raw = as_mapping(spec["reconcile"], problems, spec.line_of("reconcile"), where)
    if raw is None:
        return None
    problems.unknown_keys(raw, RECONCILE_KEYS, where)
    token = raw.get("token")
    ok = True
    if not secret_refs.is_reference(token):
        problems.add(raw.line_of("token") if "token" in raw else raw.line,
                     f"{where}: 'token' must be a secret reference like ${{credential:{name}-reconcile}}")
        ok = False
    else:
        try:
            token = resolve_secret(token, environ)
        except SecretError as exc:
            problems.add(raw.line_of("token"), f"{where}: {exc}")
            ok = False
    api_url = raw.get("api_url", default_api_url)
    if not isinstance(api_url, str) or not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", api_url):
        problems.add(raw.line_of("api_url"), f"{where}: api_url must be an http:// or https:// URL "
                                             f"without query string, not {api_url!r}")
        ok = False
    timeout = 10.0
    if "timeout" in raw:
        try:
            timeout = parse_duration(raw["timeout"])
            if timeout <= 0:
                raise ValueError(f"'{raw['timeout']}' is not positive")
        except ValueError as exc:
            problems.add(raw.line_of("timeout"), f"{where}.timeout: {exc}")
    hooks = _hooks(raw, where, provider, problems) if "hooks" in raw else ()
    if not ok:
        return None
    return ReconcileConfig(api_url=api_url.rstrip("/"), token=token, hooks=hooks, timeout=timeout)


def _items(raw, key, problems, where) -> list[tuple[object, int]]:
    """A list under `key` as (item, line) pairs; a problem unless it is a list."""
    values = raw[key]
    if not isinstance(values, LineList):
        problems.add(raw.line_of(key), f"{where}: '{key}' must be a list")
        return []
    return [(v, values.line_of(i)) for i, v in enumerate(values)]


def _hooks(raw, where, provider, problems) -> tuple[HookRef, ...]:
    """`hooks: [{repo: acme/api, id: 123}, {org: acme, id: 7}]` (GitLab: `project:` or `repo:`)."""
    out = []
    for item, line in _items(raw, "hooks", problems, f"{where}"):
        if not isinstance(item, LineDict):
            problems.add(line, f"{where}: each hook is a mapping like {{repo: owner/name, id: 123}}")
            continue
        problems.unknown_keys(item, HOOK_KEYS, f"{where} hook")
        hook_id = item.get("id")
        repo = item.get("repo") or item.get("project")
        org = item.get("org")
        if isinstance(hook_id, bool) or not isinstance(hook_id, int) or hook_id < 1:
            problems.add(line, f"{where}: a hook's 'id' is the host's hook id, a positive integer")
            continue
        if (repo is None) == (org is None) or not isinstance(repo or org, str):
            problems.add(line, f"{where}: a hook names its repository (repo: or project:) or, on "
                               "GitHub, its organization (org:), not both")
            continue
        if org is not None and provider != "github":
            problems.add(line, f"{where}: org hooks are GitHub's; {provider} hooks name a project")
            continue
        out.append(HookRef(id=hook_id, repo=repo, org=org))
    return tuple(out)


def parse_watch(spec, name, problems) -> tuple[WatchSpec, ...]:
    """A source's `watch: [acme/api, {repo: acme/web, branches: [main], tags: ["v*"]}]`: a plain
    name watches every branch and tag."""
    where = f"source '{name}' watch"
    out = []
    for item, line in _items(spec, "watch", problems, f"source '{name}'"):
        if isinstance(item, str):
            out.append(WatchSpec(source=name, repo=item, branches=("**",), tags=("**",)))
            continue
        if not isinstance(item, LineDict) or not isinstance(item.get("repo"), str):
            problems.add(line, f"{where}: each entry is a repository name or "
                               "{repo: NAME, branches: [...], tags: [...]}")
            continue
        problems.unknown_keys(item, WATCH_KEYS, where)
        lists = {}
        for key in ("branches", "tags"):
            value = item.get(key, [])
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.add(item.line_of(key), f"{where}.{key} must be a pattern or a list of them")
                value = []
            for why in validate_patterns(value):
                problems.add(item.line_of(key), f"{where}.{key}: {why}")
            lists[key] = tuple(value)
        if not lists["branches"] and not lists["tags"]:
            lists = {"branches": ("**",), "tags": ("**",)}
        out.append(WatchSpec(source=name, repo=item["repo"], **lists))
    return tuple(out)


def rule_watches(doc, rules, sources, problems) -> tuple[WatchSpec, ...]:
    """What rules with `watch: true` watch: their repositories (named without wildcards) on their
    `on.source` (or the one source with API access), the refs their filters name."""
    raw = doc.get("rules")
    if not isinstance(raw, LineList):
        return ()
    compiled = {r.name: r for r in rules}
    api_sources = [n for n, s in sources.items() if s.reconcile is not None]
    out = []
    for spec in raw:
        if not isinstance(spec, LineDict) or "watch" not in spec:
            continue
        name, line = spec.get("name"), spec.line_of("watch")
        if not isinstance(spec["watch"], bool):
            problems.add(line, "'watch' must be true or false", name)
            continue
        rule = compiled.get(name)
        if not spec["watch"] or rule is None:
            continue
        if rule.literal_repos is None:
            problems.add(line, "watch: true needs the rule's on.repo to name repositories without "
                               "wildcards (or list them under a source's watch:)", name)
            continue
        names = list(rule.sources.sources) if rule.sources is not None else api_sources
        if rule.sources is None and len(api_sources) != 1:
            problems.add(line, "watch: true needs on.source: " + (
                "no source has a reconcile: or report: token" if not api_sources else
                f"several sources have API tokens ({', '.join(api_sources)})"), name)
            continue
        for source in names:
            src = sources.get(source)
            if src is None or src.reconcile is None:
                problems.add(line, f"watch: true: source '{source}' has no reconcile: or report: "
                                   "token to read branch heads with", name)
                continue
            out += [WatchSpec(source=source, repo=repo, rule=name, **_rule_refs(rule))
                    for repo in rule.literal_repos]
    return tuple(out)


def _rule_refs(rule) -> dict:
    """The branches and tags a rule's filters can match (GitHub Actions: a rule with only tag
    filters runs for no branch, and the reverse)."""
    has_b = rule.branches is not None or rule.branches_ignore is not None
    has_t = rule.tags is not None or rule.tags_ignore is not None
    branches = tuple(rule.branches.sources) if rule.branches is not None else ("**",)
    tags = tuple(rule.tags.sources) if rule.tags is not None else ("**",)
    if not has_b and not has_t:
        return {"branches": branches if "push" in rule.events else (),
                "tags": tags if "tag" in rule.events else ()}
    return {"branches": branches if has_b else (), "tags": tags if has_t else ()}


def parse_policy(raw, problems, line) -> ReconcilePolicy:
    """`settings.reconcile: {interval, since, max_redeliveries, enabled}` over the defaults."""
    spec = as_mapping(raw, problems, line, "settings.reconcile")
    if spec is None:
        return ReconcilePolicy()
    problems.unknown_keys(spec, RECONCILE_SETTINGS_KEYS, "settings.reconcile")
    values: dict = {}
    for key, value in spec.items():
        where = f"settings.reconcile.{key}"
        if key == "enabled":
            if isinstance(value, bool):
                values[key] = value
            else:
                problems.add(spec.line_of(key), f"{where} must be true or false")
        elif key == "max_redeliveries":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.add(spec.line_of(key), f"{where} must be a positive integer")
            else:
                values[key] = value
        elif key in ("interval", "since"):
            try:
                values[key] = parse_duration(value)
                if values[key] <= 0:
                    raise ValueError(f"'{value}' is not positive")
            except ValueError as exc:
                values.pop(key, None)
                problems.add(spec.line_of(key), f"{where}: {exc}")
    return ReconcilePolicy(**values)
