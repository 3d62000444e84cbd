"""Configuration sources and targets: rules.yaml's `sources:` and `targets:` sections checked into
`SourceConfig`s and `TargetConfig`s.

Input: the parsed document with its lines. Output: {name: SourceConfig} and {name: TargetConfig},
secrets resolved (or only checked), each problem added to the load's `Problems`.
"""
from __future__ import annotations

import re
from typing import Any

from bridge.config import secrets as secret_refs
from bridge.config.keys import NAME_RE, REPORT_KEYS, SOURCE_KEYS
from bridge.config.model import ReportConfig, SourceConfig, TargetConfig
from bridge.config.policy import target_policy
from bridge.config.reconcile import ReconcileConfig, parse_reconcile, parse_watch
from bridge.config.problems import as_mapping, line_of_key, maybe_secret, resolve_secret, resolving
from bridge.config.rulecheck import literal_problems
from bridge.config.settings import retry_policy
from bridge.config.yamlload import LineList
from bridge.errors import InvalidValue, SecretError, did_you_mean
from bridge.policies import NO_POLICY, REPORT_RETRY, RetryPolicy, parse_duration
from bridge import providers
from bridge.providers import clone as clone_hosts
from bridge.providers.clone import clone_url_problem
from bridge.targets import TARGET_KINDS, target_spec, unknown_kind_message


def parse_sources(doc, problems, environ) -> dict:
    raw = as_mapping(doc.get("sources"), problems, doc.line_of("sources"), "sources")
    if not raw:
        problems.add(doc.line_of("sources") if "sources" in doc else 1,
                     "no sources: add at least one under 'sources:'")
        return {}
    out = {}
    for name, spec in raw.items():
        line = raw.line_of(name)
        if not NAME_RE.match(name):
            problems.add(line, f"source name '{name}' may use only letters, digits, '.', '_' and '-'")
        spec = as_mapping(spec, problems, line, f"source '{name}'")
        if spec is not None:
            out[name] = _source(name, spec, line, problems, environ)
    return out


def _source(name, spec, line, problems, environ) -> SourceConfig:
    """One source's mapping, checked (its problems added) and made a SourceConfig."""
    problems.unknown_keys(spec, SOURCE_KEYS, f"source '{name}'")
    provider = spec.get("provider")
    if provider not in providers.names():
        problems.add(spec.line_of("provider"),
                     f"source '{name}': unknown provider '{provider}'"
                     + did_you_mean(provider, providers.names())
                     + f"; known: {', '.join(providers.names())}")
    resolved = _source_secrets(name, spec, line, problems, environ)
    verify_options = _accept(name, spec, provider, resolved, problems) if "accept" in spec else {}
    options = _clone_options(name, spec, problems, environ)
    report = _report(spec, name, provider, problems, environ) if "report" in spec else None
    api_url = report.api_url if report else providers.default_api_url(str(provider))
    hosts = _clone_hosts(spec, name, problems) if "clone_hosts" in spec else \
        clone_hosts.default_hosts(str(provider), api_url)
    return SourceConfig(name=name, provider=str(provider), secrets=tuple(resolved), line=line,
                        options=options, report=report, clone_hosts=hosts,
                        clone_hosts_default="clone_hosts" not in spec, verify_options=verify_options,
                        reconcile=_reconcile(spec, name, provider, report, problems, environ))


def _accept(name, spec, provider, resolved, problems) -> dict:
    """A source's `accept:` (one form or a list): the ways its provider may authenticate a
    delivery (GitLab: token, signature, or both while rotating), as `verify` options."""
    where = f"source '{name}'"
    known = getattr(providers.PROVIDERS.get(provider), "ACCEPT", None) \
        if isinstance(provider, str) else None
    if not known:
        if provider in providers.names():
            problems.add(spec.line_of("accept"), f"{where}: accept is not an option of provider "
                                                 f"'{provider}' (it has one way to sign)")
        return {}
    value = spec["accept"]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        problems.add(spec.line_of("accept"), f"{where}: accept must be one of {', '.join(known)} "
                                             "or a list of them")
        return {}
    # Loading without secrets (or with broken ones): only the names are checked.
    why = providers.PROVIDERS[provider].accept_problem(tuple(values), resolved or None)
    if why is not None:
        problems.add(spec.line_of("accept"), f"{where}: {why}")
        return {}
    return {"accept": tuple(dict.fromkeys(values))}


def _reconcile(spec, name, provider, report, problems, environ) -> ReconcileConfig | None:
    """A source's `reconcile:`; without one, its `report:` token reads the host's refs."""
    if "reconcile" in spec:
        if provider in providers.names() and not hasattr(providers.PROVIDERS[provider], "Reconcile"):
            problems.add(spec.line_of("reconcile"), f"source '{name}': reconcile is not available "
                                                    f"for provider '{provider}' (GitHub and GitLab only)")
            return None
        return parse_reconcile(spec, name, provider, problems, environ,
                               providers.default_api_url(str(provider)))
    if report is not None and hasattr(providers.PROVIDERS.get(provider), "Reconcile"):
        return ReconcileConfig(api_url=report.api_url, token=report.token, timeout=report.timeout)
    return None


def source_watches(doc, problems) -> tuple:
    """Every source's `watch:` list (WatchSpec)."""
    raw = doc.get("sources")
    if not isinstance(raw, dict):
        return ()
    return tuple(w for name, spec in raw.items() if isinstance(spec, dict) and "watch" in spec
                 for w in parse_watch(spec, name, problems))


def _source_secrets(name, spec, line, problems, environ) -> list[bytes]:
    """A source's `secrets:` (one reference or a list of them), resolved (none when loading
    without secrets)."""
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
            value = resolve_secret(ref, environ)
        except SecretError as exc:
            problems.add(item_line, f"source '{name}': {exc}")
            continue
        if value is not None:
            resolved.append(value.encode("utf-8"))
    return resolved


def _clone_options(name, spec, problems, environ) -> dict:
    """A source's options (clone_url, clone_token): the URL with the refusal every fetch would
    give, the token a secret reference sent over https only."""
    options = {k: v for k, v in spec.items()
               if k not in ("provider", "secrets", "accept", "report", "clone_hosts", "reconcile", "watch")}
    if "clone_url" in options:
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
            options["clone_token"] = maybe_secret(options["clone_token"], problems,
                                                  spec.line_of("clone_token"), environ, None)
    return options


def _report(spec, name, provider, problems, environ) -> ReportConfig | None:
    """A source's `report: {token, api_url, timeout, retry}`; the token a secret reference."""
    raw = as_mapping(spec["report"], problems, spec.line_of("report"), f"source '{name}' report")
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
            token = resolve_secret(token, environ)
        except SecretError as exc:
            problems.add(raw.line_of("token"), f"{where}: {exc}")
            ok = False
    api_url = raw.get("api_url", providers.default_api_url(provider))
    if api_url == "" and "api_url" not in raw:
        problems.add(raw.line, f"{where}: api_url is required: provider '{provider}' has no public "
                               "API address (e.g. https://gitea.example.com/api/v1)")
        ok = False
    elif not isinstance(api_url, str) or not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", api_url):
        problems.add(raw.line_of("api_url"), f"{where}: api_url must be an http:// or https:// URL "
                                             f"without query string, not {api_url!r}")
        ok = False
    values: dict[str, Any] = {}
    if "timeout" in raw:
        try:
            values["timeout"] = parse_duration(raw["timeout"])
            if values["timeout"] <= 0:
                raise InvalidValue(f"'{raw['timeout']}' is not positive")
        except ValueError as exc:
            problems.add(raw.line_of("timeout"), f"{where}.timeout: {exc}")
    if "retry" in raw:
        values["retry"] = retry_policy(raw, problems, where, REPORT_RETRY)
    if not ok:
        return None
    return ReportConfig(api_url=api_url.rstrip("/"), token=token, **values)


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


def parse_targets(doc, problems, environ, broken: set) -> dict:
    raw = as_mapping(doc.get("targets"), problems, doc.line_of("targets"), "targets")
    out = {}
    for name, spec in (raw or {}).items():
        line = raw.line_of(name)
        spec = as_mapping(spec, problems, line, f"target '{name}'")
        if spec is None:
            broken.add(name)
            continue
        kind = spec.get("kind")
        if kind not in TARGET_KINDS:
            problems.add(spec.line_of("kind"), f"target '{name}': {unknown_kind_message(kind)}")
            broken.add(name)
            continue
        cls = target_spec(kind)
        allowed = dict(cls.config_keys)
        allowed.setdefault("kind", True)
        allowed.setdefault("retry", False)
        allowed.setdefault("policy", False)
        problems.unknown_keys(spec, allowed, f"target '{name}' (kind {kind})")
        for key, required in allowed.items():
            if required and key not in spec:
                problems.add(line, f"target '{name}': '{key}' is required for kind {kind}")
        options = {}
        unread = []      # references left unread (resolve_secrets=False): stand in for their values
        for key, value in spec.items():
            if key in ("retry", "policy"):
                continue
            if key in getattr(cls, "secret_keys", ()) and not secret_refs.is_reference(value):
                # Named, never quoted: the literal is the secret.
                problems.add(spec.line_of(key), f"target '{name}': '{key}' must be a secret reference "
                                                f"like ${{credential:{name}-{key}}}, not literal text")
            options[key] = maybe_secret(value, problems, spec.line_of(key), environ, None)
            if options[key] is None and secret_refs.is_reference(value) and not resolving():
                options[key] = value
                unread.append(value)
        for msg in cls.validate(options):
            if not any(ref in msg for ref in unread):    # about a value we did not read
                problems.add(line_of_key(spec, msg, line), f"target '{name}': {msg}")
        references = [v for v in spec.values() if secret_refs.is_reference(v)]
        for tline, msg in literal_problems(spec, cls, skip=references):
            problems.add(tline, f"target '{name}': {msg} (in a rule's run:, where templates are "
                                "filled in)")
        retry = retry_policy(spec, problems, f"target '{name}'", RetryPolicy()) if "retry" in spec \
            else RetryPolicy()
        policy = target_policy(spec, problems, f"target '{name}'") if "policy" in spec else NO_POLICY
        out[name] = TargetConfig(name=name, kind=kind, options=options, retry=retry, line=line,
                                 policy=policy)
    return out
