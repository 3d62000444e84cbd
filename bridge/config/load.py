"""Configuration stage: rules.yaml -> a validated, immutable `Config` (sources, targets, rules, settings).

Input: the file's path (or text). Output: `Config`, or `ConfigError` carrying every problem at
once, each as `rules.yaml:LINE: rule 'NAME': message`. Secret references are resolved here so a
missing secret stops the start, naming the reference and never a value; `resolve_secrets=False`
(explain, `cibridge check --no-secrets`) checks their syntax only and leaves their values out.
"""
from __future__ import annotations

import contextvars
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bridge.config import secrets as secret_refs
from bridge.config.yamlload import LineDict, LineList, YamlError, load
from bridge.errors import ConfigError, SecretError, did_you_mean
from bridge.events import KINDS
from bridge.globs import GlobError, validate_patterns
from bridge.logs import LEVELS as LOG_LEVELS
from bridge.policies import (REPORT_RETRY, FollowPolicy, MirrorPolicy, RetryPolicy, parse_duration,
                             parse_size)
from bridge import providers
from bridge.providers import clone as clone_hosts
from bridge.rules import DEFAULT_EVENTS, Rule, compile_rule
from bridge.targets import TARGET_KINDS, target_class, unknown_kind_message
from bridge.templates import commit_templates, template_problems, templates_in

TOP_KEYS = ("sources", "targets", "rules", "settings")
SOURCE_KEYS = ("provider", "secrets", "clone_url", "clone_token", "clone_hosts", "report")
RULE_KEYS = ("name", "on", "run", "on_unknown_files", "description", "context", "report",
             "report_skipped", "allow_empty_sha")
ON_KEYS = ("source", "repo", "branches", "branches-ignore", "tags", "tags-ignore", "paths",
           "paths-ignore", "events")
SETTINGS_KEYS = ("durability", "max_body_bytes", "workers", "dispatcher_concurrency",
                 "database_url", "lease_seconds", "poll_interval", "admin_token", "follow",
                 "mirrors", "header_timeout", "body_timeout", "log_level")
RETRY_KEYS = ("initial", "maximum", "give_up_after")
REPORT_KEYS = ("token", "api_url", "timeout", "retry")
FOLLOW_KEYS = ("interval", "max_interval", "give_up_after", "concurrency")
MIRRORS_KEYS = ("fetch_timeout", "max_size", "max_age")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_RULES_FILE = 4 * 2**20


@dataclass(frozen=True)
class ReportConfig:
    """A source's `report:`: commit statuses go back to its git host."""
    api_url: str
    token: str = field(repr=False)
    timeout: float = 10.0
    retry: RetryPolicy = REPORT_RETRY


@dataclass(frozen=True)
class RuleReport:
    """A rule's commit-status settings: `context:`, `report:`, `report_skipped:`."""
    context: str
    report: bool = True
    report_skipped: bool = False


@dataclass(frozen=True)
class Settings:
    durability: str = "full"
    max_body_bytes: int = 25 * 2**20
    workers: int | None = None       # None: the gunicorn config's, else 2
    dispatcher_concurrency: int = 4
    database_url: str | None = field(default=None, repr=False)   # may hold a password
    lease_seconds: float = 60.0
    poll_interval: float = 0.01
    admin_token: str | None = field(default=None, repr=False)   # bearer token for /metrics etc.
    follow: FollowPolicy = FollowPolicy()
    mirrors: MirrorPolicy = MirrorPolicy()
    header_timeout: float = 10.0     # a request's whole headers, from connect or the last reply
    body_timeout: float = 30.0       # its whole body, from the end of the headers
    log_level: str | None = None     # None: info, unless --log-level / BRIDGE_LOG_LEVEL say


@dataclass(frozen=True)
class SourceConfig:
    name: str
    provider: str
    secrets: tuple[bytes, ...] = field(repr=False)
    line: int = 0
    options: dict = field(default_factory=dict, repr=False)
    report: ReportConfig | None = field(default=None, repr=False)
    #: Hosts the mirror may fetch from when a payload names the URL (`clone_hosts:`, else the
    #: host of the provider's API); `clone_url` is always allowed.
    clone_hosts: tuple[str, ...] = ()
    clone_hosts_default: bool = True


@dataclass(frozen=True)
class TargetConfig:
    name: str
    kind: str
    options: dict = field(repr=False)
    retry: RetryPolicy = RetryPolicy()
    line: int = 0


@dataclass(frozen=True)
class Config:
    path: str
    version: str
    sources: dict
    targets: dict
    rules: tuple
    settings: Settings
    rule_reports: dict = field(default_factory=dict)     # rule name -> RuleReport
    secrets_resolved: bool = True    # False: loaded for explain/check without reading secrets

    def rule_report(self, rule: str) -> RuleReport:
        return self.rule_reports.get(rule) or RuleReport(context=f"bridge/{rule}")

    def database_url(self, state_dir, environ=os.environ) -> str:
        url = self.settings.database_url or environ.get("BRIDGE_DATABASE_URL")
        if url:
            return url
        return f"sqlite:///{Path(state_dir).resolve() / 'bridge.db'}"

    def build_targets(self, state_dir=None) -> dict:
        """The targets, built. `state_dir` (a dispatcher's): defaults that depend on it, such as
        an exec target's working directory."""
        return {name: target_class(t.kind)(name, _target_options(t, state_dir))
                for name, t in self.targets.items()}

    def retry_policies(self) -> dict:
        return {name: t.retry for name, t in self.targets.items()}

    @property
    def ruleset(self):
        from bridge.rules import RuleSet
        cached = self.__dict__.get("_ruleset")
        if cached is None:
            cached = RuleSet(self.rules)
            object.__setattr__(self, "_ruleset", cached)
        return cached


def _target_options(target: TargetConfig, state_dir) -> dict:
    options = dict(target.options)
    if state_dir is None:
        return options
    return target_class(target.kind).with_state_dir(options, str(Path(state_dir).resolve()))


class _Problems:
    """Collects problems as 'file:LINE: [rule 'NAME': ]message', sorted by line at the end."""

    def __init__(self, filename: str):
        self.filename = filename
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, message: str, rule: str | None = None):
        prefix = f"rule '{rule}': " if rule is not None else ""
        self.items.append((line, f"{self.filename}:{line}: {prefix}{message}"))

    def unknown_keys(self, mapping: LineDict, allowed, where: str, rule=None):
        for key in mapping:
            if key not in allowed:
                self.add(mapping.line_of(key), f"unknown key '{key}' in {where}"
                                               + did_you_mean(key, allowed), rule)

    def messages(self) -> list[str]:
        return [m for _, m in sorted(self.items, key=lambda item: item[0])]


_BASE_DIR: contextvars.ContextVar = contextvars.ContextVar("rules_dir", default=None)
_RESOLVE: contextvars.ContextVar = contextvars.ContextVar("resolve_secrets", default=True)


def load_config(path, *, environ=os.environ, text: str | None = None,
                resolve_secrets: bool = True) -> Config:
    """Read and validate rules.yaml; raise ConfigError listing every problem.

    Relative `${file:...}` secret paths are relative to the file's directory. With
    `resolve_secrets=False` no secret is read (a missing one is no problem): secret values are None
    (target options keep the reference text) and `secrets_resolved` is False; for explain and
    checks, never for serving.
    """
    token = _BASE_DIR.set(os.path.dirname(os.path.abspath(str(path))))
    resolving = _RESOLVE.set(resolve_secrets)
    try:
        return _load_config(str(path), environ, text)
    finally:
        _RESOLVE.reset(resolving)
        _BASE_DIR.reset(token)


def _secret(ref, environ) -> str | None:
    """The value of a secret reference, or None when loading without secrets; raises SecretError
    naming the reference either way when its syntax is wrong."""
    if _RESOLVE.get():
        return secret_refs.resolve(ref, environ, _BASE_DIR.get())
    m = secret_refs.REFERENCE.match(ref) if isinstance(ref, str) else None
    if not m:
        raise SecretError(f"'{ref}' is not a secret reference (use ${{env:NAME}}, ${{file:PATH}} "
                          "or ${credential:NAME})")
    kind, name = m.groups()
    if kind == "credential" and ("/" in name or "\x00" in name or name in (".", "..")):
        raise SecretError(f"secret {ref}: a credential name cannot contain '/' or NUL")
    return None


def read_rules_text(path) -> str:
    """rules.yaml's text, read within MAX_RULES_FILE and as UTF-8 (CRLF kept: it is part of
    the version); raises ConfigError."""
    filename = os.path.basename(path) or path
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_RULES_FILE + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(raw) > MAX_RULES_FILE:
        raise ConfigError([f"{filename}:1: file is larger than {MAX_RULES_FILE} bytes"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{filename}:1: file is not UTF-8"]) from None


def rules_version(text: str) -> str:
    """The version a rules text is known by (logs, /readyz, stored with each delivery)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _load_config(path, environ, text) -> Config:
    filename = os.path.basename(path) or path
    if text is None:
        text = read_rules_text(path)
    version = rules_version(text)
    problems = _Problems(filename)
    duplicates: list = []
    try:
        doc = load(text, duplicates=duplicates)
    except YamlError as exc:
        raise ConfigError([f"{filename}:{exc.line}: {exc.message}"]) from None
    if not isinstance(doc, LineDict):
        raise ConfigError([f"{filename}:1: the file must be a mapping with sources, targets and rules"])
    problems.unknown_keys(doc, TOP_KEYS, "the top level")
    _duplicate_problems(doc, duplicates, problems)

    settings = _settings(doc.get("settings"), problems, environ)
    sources = _sources(doc, problems, environ)
    broken_targets: set = set()      # declared, but already reported: rules using them are not
    targets = _targets(doc, problems, environ, broken_targets)
    rule_reports: dict = {}
    rules = _rules(doc, problems, sources, targets, rule_reports, broken_targets)
    if problems.items:
        raise ConfigError(problems.messages())
    return Config(path=path, version=version, sources=sources, targets=targets, rules=tuple(rules),
                  settings=settings, rule_reports=rule_reports, secrets_resolved=_RESOLVE.get())


def _duplicate_problems(doc: LineDict, duplicates: list, problems) -> None:
    """Each duplicate key (its first value was kept) as a problem, named by the rule, source or
    target it sits in."""
    if not duplicates:
        return
    owners: dict[int, tuple[str | None, str]] = {}     # id(mapping) -> (rule, message prefix)

    def claim(value, owner):
        if isinstance(value, LineDict):
            owners[id(value)] = owner
        if isinstance(value, (LineDict, LineList)):
            for item in (value.values() if isinstance(value, dict) else value):
                claim(item, owner)

    for section, what in (("sources", "source"), ("targets", "target")):
        if isinstance(doc.get(section), LineDict):
            for name, spec in doc[section].items():
                claim(spec, (None, f"{what} '{name}': "))
    if isinstance(doc.get("rules"), LineList):
        for i, spec in enumerate(doc["rules"]):
            name = spec.get("name") if isinstance(spec, LineDict) else None
            claim(spec, (name if isinstance(name, str) and name else f"#{i + 1}", ""))
    for dup in duplicates:
        rule, prefix = owners.get(id(dup.mapping), (None, ""))
        problems.add(dup.line, prefix + dup.message, rule)


def _mapping(value, problems, line, what, rule=None) -> LineDict | None:
    if value is None:
        return None
    if not isinstance(value, LineDict):
        problems.add(getattr(value, "line", line), f"{what} must be a mapping", rule)
        return None
    return value


def _settings(raw, problems, environ) -> Settings:
    if raw is None:
        return Settings()
    raw = _mapping(raw, problems, 1, "settings")
    if raw is None:
        return Settings()
    problems.unknown_keys(raw, SETTINGS_KEYS, "settings")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        line = raw.line_of(key)
        if key == "durability":
            if value not in ("full", "normal"):
                problems.add(line, f"settings.durability must be 'full' or 'normal', not '{value}'")
            else:
                values[key] = value
        elif key in ("max_body_bytes", "workers", "dispatcher_concurrency"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.add(line, f"settings.{key} must be a positive integer")
            else:
                values[key] = value
        elif key in ("lease_seconds", "poll_interval"):
            try:
                values[key] = parse_duration(value)
            except ValueError as exc:
                problems.add(line, f"settings.{key}: {exc}")
        elif key in ("header_timeout", "body_timeout"):
            try:
                values[key] = parse_duration(value)
            except ValueError as exc:
                problems.add(line, f"settings.{key}: {exc}")
                continue
            if not 0 < values[key] <= 3600:
                problems.add(line, f"settings.{key} must be more than 0 and at most 1h")
                del values[key]
        elif key == "database_url":
            # A reference first (the URL usually holds a password), then the scheme of its value.
            url = _maybe_secret(value, problems, line, environ, None)
            if url is None and secret_refs.is_reference(value):
                continue
            if not isinstance(url, str) or not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
                problems.add(line, "settings.database_url must be a sqlite:// or postgresql:// URL "
                                   "(or a secret reference to one)")
            else:
                values[key] = url
        elif key == "admin_token":
            if not secret_refs.is_reference(value):
                problems.add(line, "settings.admin_token must be a secret reference like "
                                   "${credential:bridge-admin-token}")
            else:
                values[key] = _maybe_secret(value, problems, line, environ, None)
        elif key == "follow":
            values[key] = _follow(value, problems, line)
        elif key == "mirrors":
            values[key] = _mirrors(value, problems, line)
        elif key == "log_level":
            _log_level(value, problems, line, values)
    return Settings(**values)


def _log_level(value, problems, line, values) -> None:
    """settings.log_level: one of LOG_LEVELS (the flag and environment override it)."""
    if isinstance(value, str) and value.strip().lower() in LOG_LEVELS:
        values["log_level"] = value.strip().lower()
    else:
        problems.add(line, f"settings.log_level must be one of {', '.join(LOG_LEVELS)}, "
                           f"not '{value}'" + did_you_mean(str(value), LOG_LEVELS))


def _follow(raw, problems, line) -> FollowPolicy:
    spec = _mapping(raw, problems, line, "settings.follow")
    if spec is None:
        return FollowPolicy()
    problems.unknown_keys(spec, FOLLOW_KEYS, "settings.follow")
    values: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "concurrency":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.add(spec.line_of(key), "settings.follow.concurrency must be a positive integer")
            else:
                values[key] = value
        elif key in FOLLOW_KEYS:
            try:
                values[key] = parse_duration(value)
            except ValueError as exc:
                problems.add(spec.line_of(key), f"settings.follow.{key}: {exc}")
    return FollowPolicy(**values)


def _mirrors(raw, problems, line) -> MirrorPolicy:
    """`settings.mirrors: {fetch_timeout, max_size, max_age}` over the defaults."""
    spec = _mapping(raw, problems, line, "settings.mirrors")
    if spec is None:
        return MirrorPolicy()
    problems.unknown_keys(spec, MIRRORS_KEYS, "settings.mirrors")
    values: dict[str, Any] = {}
    for key, value in spec.items():
        try:
            if key == "max_size":
                values[key] = parse_size(value)
                if values[key] < 1:
                    raise ValueError(f"'{value}' is not positive")
            elif key in MIRRORS_KEYS:
                values[key] = parse_duration(value)    # refuses YAML .nan/.inf too
                if values[key] <= 0:
                    raise ValueError(f"'{value}' is not positive")
        except ValueError as exc:
            values.pop(key, None)
            problems.add(spec.line_of(key), f"settings.mirrors.{key}: {exc}")
    return MirrorPolicy(**values)


def _report(spec, name, provider, problems, environ) -> ReportConfig | None:
    """A source's `report: {token, api_url, timeout, retry}`; the token a secret reference."""
    raw = _mapping(spec["report"], problems, spec.line_of("report"), f"source '{name}' report")
    if raw is None:
        return None
    where = f"source '{name}' report"
    problems.unknown_keys(raw, REPORT_KEYS, where)
    ok = True
    token = raw.get("token")
    if not secret_refs.is_reference(token):
        problems.add(raw.line_of("token") if "token" in raw else raw.line,
                     f"{where}: 'token' must be a secret reference like ${{credential:{provider}-token}}")
        ok = False
    else:
        try:
            token = _secret(token, environ)
        except SecretError as exc:
            problems.add(raw.line_of("token"), f"{where}: {exc}")
            ok = False
    api_url = raw.get("api_url", providers.default_api_url(provider))
    if not isinstance(api_url, str) or not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", api_url):
        problems.add(raw.line_of("api_url"), f"{where}: api_url must be an http:// or https:// URL "
                                             f"without query string, not {api_url!r}")
        ok = False
    values: dict[str, Any] = {}
    if "timeout" in raw:
        try:
            values["timeout"] = parse_duration(raw["timeout"])
            if values["timeout"] <= 0:
                raise ValueError(f"'{raw['timeout']}' is not positive")
        except ValueError as exc:
            problems.add(raw.line_of("timeout"), f"{where}.timeout: {exc}")
    if "retry" in raw:
        values["retry"] = _retry_policy(raw, problems, where, REPORT_RETRY)
    if not ok:
        return None
    return ReportConfig(api_url=api_url.rstrip("/"), token=token, **values)


def _maybe_secret(value, problems, line, environ, rule):
    if secret_refs.is_reference(value):
        try:
            return _secret(value, environ)
        except SecretError as exc:
            problems.add(line, str(exc), rule)
            return None
    return value


def _sources(doc, problems, environ) -> dict:
    raw = _mapping(doc.get("sources"), problems, doc.line_of("sources"), "sources")
    if not raw:
        problems.add(doc.line_of("sources") if "sources" in doc else 1,
                     "no sources: add at least one under 'sources:'")
        return {}
    out = {}
    for name, spec in raw.items():
        line = raw.line_of(name)
        if not NAME_RE.match(name):
            problems.add(line, f"source name '{name}' may use only letters, digits, '.', '_' and '-'")
        spec = _mapping(spec, problems, line, f"source '{name}'")
        if spec is None:
            continue
        problems.unknown_keys(spec, SOURCE_KEYS, f"source '{name}'")
        provider = spec.get("provider")
        if provider not in providers.names():
            problems.add(spec.line_of("provider"),
                         f"source '{name}': unknown provider '{provider}'"
                         + did_you_mean(provider, providers.names())
                         + f"; known: {', '.join(providers.names())}")
        values = spec.get("secrets")
        if isinstance(values, str):
            values = LineList([values])
            values.line = spec.line_of("secrets")
            values.item_lines = [values.line]
        if not isinstance(values, list) or not values:
            problems.add(spec.line_of("secrets"),
                         f"source '{name}': 'secrets' must list at least one secret reference")
            values = []
        resolved = []
        for i, ref in enumerate(values):
            item_line = values.line_of(i) if isinstance(values, LineList) else line
            if not secret_refs.is_reference(ref):
                problems.add(item_line, f"source '{name}': secrets must be references like "
                                        "${env:NAME}, ${file:PATH} or ${credential:NAME}, not literal values")
                continue
            try:
                value = _secret(ref, environ)
            except SecretError as exc:
                problems.add(item_line, f"source '{name}': {exc}")
                continue
            if value is not None:
                resolved.append(value.encode("utf-8"))
        options = {k: v for k, v in spec.items()
                   if k not in ("provider", "secrets", "report", "clone_hosts")}
        if "clone_url" in options:
            from bridge.dispatch.changes import clone_url_problem      # the refusal every fetch would give
            if (why := clone_url_problem(options["clone_url"])) is not None:
                problems.add(spec.line_of("clone_url"), f"source '{name}': {why}")
            elif "clone_token" in options and \
                    not re.match(r"https://[^/@]+(/|$)", options["clone_url"]):
                problems.add(spec.line_of("clone_token"), f"source '{name}': clone_token is sent "
                             "over https only: clone_url must be https:// without user info "
                             "(for ssh, the service user's key is used)")
        if "clone_token" in options:
            if "clone_url" not in options:
                problems.add(spec.line_of("clone_token"), f"source '{name}': clone_token is sent only "
                                                          "to the source's clone_url: set clone_url too")
            if not secret_refs.is_reference(options["clone_token"]):
                problems.add(spec.line_of("clone_token"), f"source '{name}': clone_token must be a "
                                                          "secret reference like ${credential:NAME}")
                options.pop("clone_token")
            else:
                options["clone_token"] = _maybe_secret(options["clone_token"], problems,
                                                       spec.line_of("clone_token"), environ, None)
        report = _report(spec, name, provider, problems, environ) if "report" in spec else None
        api_url = report.api_url if report else providers.default_api_url(str(provider))
        hosts = _clone_hosts(spec, name, problems) if "clone_hosts" in spec else \
            clone_hosts.default_hosts(str(provider), api_url)
        out[name] = SourceConfig(name=name, provider=str(provider), secrets=tuple(resolved), line=line,
                                 options=options, report=report, clone_hosts=hosts,
                                 clone_hosts_default="clone_hosts" not in spec)
    return out


def _clone_hosts(spec, name, problems) -> tuple[str, ...]:
    """A source's `clone_hosts:`: host names (optionally host:port), each checked with its line;
    `[]` allows none (only clone_url is fetched from)."""
    values = spec["clone_hosts"]
    if isinstance(values, str):
        values = [values]
        lines = [spec.line_of("clone_hosts")]
    elif isinstance(values, LineList):
        lines = [values.line_of(i) for i in range(len(values))]
    else:
        problems.add(spec.line_of("clone_hosts"), f"source '{name}': clone_hosts must be a list of "
                                                  "host names, e.g. [gitlab.example.com]")
        return ()
    for value, line in zip(values, lines):
        if (why := clone_hosts.entry_problem(value)) is not None:
            problems.add(line, f"source '{name}': {why}")
    return clone_hosts.normalize(values)


def _retry_policy(spec, problems, where: str, base: RetryPolicy) -> RetryPolicy:
    """`retry: {initial, maximum, give_up_after}` under `spec`, over the defaults in `base`."""
    raw = _mapping(spec["retry"], problems, spec.line_of("retry"), f"{where} retry")
    if raw is None:
        return base
    problems.unknown_keys(raw, RETRY_KEYS, f"{where} retry")
    values = {}
    for key in RETRY_KEYS:
        if key in raw:
            try:
                values[key] = parse_duration(raw[key])
            except ValueError as exc:
                problems.add(raw.line_of(key), f"{where} retry.{key}: {exc}")
    return replace(base, **values)


def _targets(doc, problems, environ, broken: set) -> dict:
    raw = _mapping(doc.get("targets"), problems, doc.line_of("targets"), "targets")
    out = {}
    for name, spec in (raw or {}).items():
        line = raw.line_of(name)
        spec = _mapping(spec, problems, line, f"target '{name}'")
        if spec is None:
            broken.add(name)
            continue
        kind = spec.get("kind")
        if kind not in TARGET_KINDS:
            problems.add(spec.line_of("kind"), f"target '{name}': {unknown_kind_message(kind)}")
            broken.add(name)
            continue
        cls = target_class(kind)
        allowed = dict(cls.config_keys)
        allowed.setdefault("kind", True)
        allowed.setdefault("retry", False)
        problems.unknown_keys(spec, allowed, f"target '{name}' (kind {kind})")
        for key, required in allowed.items():
            if required and key not in spec:
                problems.add(line, f"target '{name}': '{key}' is required for kind {kind}")
        options = {}
        unread = []      # references left unread (resolve_secrets=False): stand in for their values
        for key, value in spec.items():
            if key == "retry":
                continue
            if key in getattr(cls, "secret_keys", ()) and not secret_refs.is_reference(value):
                # Named, never quoted: the literal is the secret.
                problems.add(spec.line_of(key), f"target '{name}': '{key}' must be a secret reference "
                                                f"like ${{credential:{name}-{key}}}, not literal text")
            options[key] = _maybe_secret(value, problems, spec.line_of(key), environ, None)
            if options[key] is None and secret_refs.is_reference(value) and not _RESOLVE.get():
                options[key] = value
                unread.append(value)
        for msg in cls.validate(options):
            if not any(ref in msg for ref in unread):    # about a value we did not read
                problems.add(_line_of_key(spec, msg, line), f"target '{name}': {msg}")
        references = [v for v in spec.values() if secret_refs.is_reference(v)]
        for tline, msg in _literal_problems(spec, cls, skip=references):
            problems.add(tline, f"target '{name}': {msg} (in a rule's run:, where templates are "
                                "filled in)")
        retry = _retry_policy(spec, problems, f"target '{name}'", RetryPolicy()) if "retry" in spec \
            else RetryPolicy()
        out[name] = TargetConfig(name=name, kind=kind, options=options, retry=retry, line=line)
    return out


def _rules(doc, problems, sources, targets, rule_reports, broken_targets=frozenset()) -> list[Rule]:
    raw = doc.get("rules")
    if raw is None:
        return []
    if not isinstance(raw, LineList):
        problems.add(doc.line_of("rules"), "rules must be a list")
        return []
    seen: dict[str, int] = {}
    compiled = []
    for i, spec in enumerate(raw):
        line = raw.line_of(i)
        if not isinstance(spec, LineDict):
            problems.add(line, f"rule #{i + 1} must be a mapping with name, on and run")
            continue
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            problems.add(line, f"rule #{i + 1} has no 'name'")
            name = f"#{i + 1}"
        elif name in seen:
            problems.add(spec.line_of("name"), f"duplicate rule name (first at line {seen[name]})", name)
        else:
            seen[name] = spec.line_of("name")
        problems.unknown_keys(spec, RULE_KEYS, "the rule", name)
        rule_reports[name] = _rule_report(spec, name, problems)
        on = _mapping(spec.get("on"), problems, spec.line_of("on"), "'on'", name)
        run = _mapping(spec.get("run"), problems, spec.line_of("run"), "'run'", name)
        if "on" not in spec:
            problems.add(line, "'on' is required", name)
        if "run" not in spec:
            problems.add(line, "'run' is required", name)
        if on is None or run is None:
            continue
        ok = _check_on(on, problems, name, sources)
        target_name = run.get("target")
        target = targets.get(target_name) if isinstance(target_name, str) else None
        if target is None:
            if not isinstance(target_name, str):
                problems.add(run.line_of("target"), "'run.target' must name a target under 'targets:'"
                             + (f" ({', '.join(targets)})" if targets else ""), name)
            elif target_name not in broken_targets:
                problems.add(run.line_of("target"),
                             f"unknown target '{target_name}'" + did_you_mean(target_name, targets), name)
            ok = False
        else:
            cls = target_class(target.kind)
            allowed = dict(cls.run_keys)
            allowed.setdefault("target", True)
            problems.unknown_keys(run, allowed, f"'run' (target kind {target.kind})", name)
            for key, required in allowed.items():
                if required and key not in run:
                    problems.add(run.line, f"'run.{key}' is required for target kind {target.kind}", name)
                    ok = False
            for msg in cls.validate_run(run):
                problems.add(_line_of_key(run, msg, run.line), msg, name)
                ok = False
            for tline, msg in _literal_problems(run, cls):
                problems.add(tline, msg, name)
                ok = False
        literal = target_class(target.kind).literal_keys if target is not None else ()
        for tline, msg in template_problems(_without(run, literal)):
            problems.add(tline, msg, name)
            ok = False
        if not _check_empty_sha(spec, on, run, problems, name):
            ok = False
        policy = spec.get("on_unknown_files", "run")
        if policy not in ("run", "skip"):
            problems.add(spec.line_of("on_unknown_files"),
                         f"on_unknown_files must be 'run' or 'skip', not '{policy}'", name)
            ok = False
        if ok:
            compiled.append(compile_rule(name, spec.line_of("name"), on, run,
                                         kind=target.kind, on_unknown_files=policy))
    return compiled


def _literal_problems(run: LineDict, cls, skip=()) -> list[tuple[int, str]]:
    """A problem, with its line, for each template in a key the target takes literally (an
    exec command's argv and cwd), in a rule's `run:` or the target's own options (never
    rendered there either): payload values reach a command only through its environment.
    `skip`: the target's secret references, which are not templates."""
    out = []
    for key in cls.literal_keys:
        value = run.get(key)
        if value in skip:
            continue
        for index, template in templates_in(value):
            line = value.line_of(index) if isinstance(value, LineList) else run.line_of(key)
            out.append((line, cls.literal_message(key, template)))
    return out


def _without(run: LineDict, keys) -> LineDict:
    """`run` without `keys` (checked on their own), keeping the lines of the others."""
    if not any(k in run for k in keys):
        return run
    out = LineDict({k: v for k, v in run.items() if k not in keys})
    out.line, out.key_lines = run.line, run.key_lines
    return out


#: Target/run keys whose problems point to the key's own line (the rest: the target's or run's).
_KEYED_PROBLEMS = ("retry_on_exit",)


def _line_of_key(mapping: LineDict, message: str, default: int) -> int:
    """The line of the key a target's message starts with ("retry_on_exit must ..."), else
    `default`."""
    key = message.split(" ", 1)[0]
    return mapping.line_of(key) if key in _KEYED_PROBLEMS and key in mapping else default


def _check_empty_sha(spec, on, run, problems, name) -> bool:
    """A deletion has no commit: `${sha}`/`${short_sha}` are empty then. A rule that runs on
    deletions (on.events lists delete) may use them only with `allow_empty_sha: true`."""
    allowed = spec.get("allow_empty_sha", False)
    if not isinstance(allowed, bool):
        problems.add(spec.line_of("allow_empty_sha"), "allow_empty_sha must be true or false", name)
        return False
    events = on.get("events", DEFAULT_EVENTS)
    events = [events] if isinstance(events, str) else events
    if allowed or not isinstance(events, (list, tuple)) or "delete" not in events:
        return True
    uses = commit_templates(run)
    for line, field_name in uses:
        problems.add(line, f"'${{{field_name}}}' is empty when a branch or tag is deleted, and this "
                           f"rule runs on deletions (on.events at line {on.line_of('events')} lists "
                           "delete). Fix: use '${before}' (the commit the deleted ref pointed to), "
                           "or take delete out of on.events (a separate rule for deletions), or "
                           "set 'allow_empty_sha: true' on the rule to pass an empty value", name)
    return not uses


def _rule_report(spec, name, problems) -> RuleReport:
    """`context:` (default bridge/<name>), `report:` and `report_skipped:` of one rule."""
    context = spec.get("context", f"bridge/{name}")
    if not isinstance(context, str) or not context.strip() or len(context) > 255 \
            or any(ord(c) < 32 for c in context):
        problems.add(spec.line_of("context"), "context must be a one-line name of at most 255 "
                                              f"characters, such as 'ci/{name}'", name)
        context = f"bridge/{name}"
    flags = {}
    for key in ("report", "report_skipped"):
        value = spec.get(key, key == "report")
        if not isinstance(value, bool):
            problems.add(spec.line_of(key), f"{key} must be true or false", name)
            value = key == "report"
        flags[key] = value
    if flags["report_skipped"] and not flags["report"]:
        problems.add(spec.line_of("report_skipped"), "report_skipped: true needs report: true "
                                                     "(report: false posts no status at all)", name)
    return RuleReport(context=context, **flags)


def _check_on(on: LineDict, problems, name, sources) -> bool:
    ok = True
    problems.unknown_keys(on, ON_KEYS, "'on'", name)
    for a, b in (("branches", "branches-ignore"), ("tags", "tags-ignore"), ("paths", "paths-ignore")):
        if a in on and b in on:
            problems.add(on.line_of(b), f"'{a}' and '{b}' cannot both be set (GitHub forbids it too: "
                                        f"use '!' patterns in '{a}')", name)
            ok = False
    for key in ("repo", "branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore",
                "source"):
        if key not in on:
            continue
        value = on[key]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            problems.add(on.line_of(key), f"'on.{key}' must be a pattern or a list of patterns "
                                          "(quote names like 'on', 'yes' or numbers)", name)
            ok = False
            continue
        for msg in validate_patterns(values):
            problems.add(on.line_of(key), f"on.{key}: {msg}", name)
            ok = False
        if key == "source":
            for v in values:
                if v not in sources and not any(c in v for c in "*?[!"):
                    problems.add(on.line_of(key), f"on.source: unknown source '{v}'", name)
                    ok = False
    if "events" in on:
        events = on["events"]
        events = [events] if isinstance(events, str) else events
        if not isinstance(events, list) or not events:
            problems.add(on.line_of("events"), "'on.events' must list push, tag and/or delete", name)
            ok = False
        else:
            for ev in events:
                if ev not in KINDS:
                    problems.add(on.line_of("events"), f"unknown event '{ev}' in on.events"
                                 + did_you_mean(ev, KINDS) + "; known: push, tag, delete", name)
                    ok = False
    return ok


__all__ = ["Config", "ConfigError", "ReportConfig", "RuleReport", "Settings", "SourceConfig",
           "TargetConfig", "load_config", "GlobError"]
