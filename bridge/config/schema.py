"""Editor schema: the validator's own key tables (bridge.config.keys, each target kind's config_keys and
run_keys) -> a JSON Schema (draft 2020-12) of rules.yaml, which `cibridge schema` prints.

Input: nothing but those tables. Output: a dict. The schema gives editors completion and a first
check while typing; `cibridge check` stays the authority (and the source of every message): where
a value's shape depends on more than its key, the schema admits it and leaves the rest to it.
"""
from __future__ import annotations

from bridge import providers
from bridge.config import keys as config
from bridge.events import AUTHOR_ASSOCIATIONS, KINDS, PULL_ACTIONS
from bridge.logs import LEVELS as LOG_LEVELS
from bridge.targets import TARGET_KINDS, target_spec

SECRET_REF = {"type": "string", "pattern": r"^\$\{(env|file|credential):[^}]+\}$",
              "description": "a secret reference: ${env:NAME}, ${file:PATH} or ${credential:NAME}"}
DURATION = {"type": ["string", "number"], "description": "seconds, or 5s, 10m, 24h, 30d, 2w"}
SIZE = {"type": ["string", "integer"], "description": "bytes, or 500M, 5G"}
POSITIVE = {"type": "integer", "minimum": 1}
PATTERNS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            "description": "a pattern or a list of patterns (GitHub Actions filter syntax)"}
STRING_MAP = {"type": "object"}


def _object(keys, hints: dict, *, required=(), description: str | None = None) -> dict:
    """An object with exactly `keys` (the validator's table), typed by `hints` where known."""
    out = {"type": "object",
           "properties": {key: dict(hints.get(key, {})) for key in keys},
           "additionalProperties": False}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def _policy(keys) -> dict:
    breaker = _object(config.BREAKER_KEYS, {"failures": POSITIVE, "open_for": DURATION},
                      description="open after N transient failures in a row; one probe after open_for")
    hints = {"max_running": POSITIVE, "max_running_per_group": POSITIVE,
             "rate": {"type": "string", "pattern": r"^\s*\d+\s*/\s*\d*(\.\d+)?\s*"
                                                   r"(s|sec|second|m|min|minute|h|hour|d|day)\s*$",
                      "description": "starts per time: 30/min, 5/s, 100/h"},
             "group": {"type": "string", "description": "a template, e.g. ${repo}/${ref} "
                                                        "(default: the rule and the ref)"},
             "on_newer": {"enum": ["queue", "coalesce", "cancel"]}, "debounce": DURATION,
             "breaker": breaker}
    return _object(keys, hints, description="how much the target may take (bridge.policies)")


def _retry() -> dict:
    return _object(config.RETRY_KEYS, {k: DURATION for k in config.RETRY_KEYS},
                   description="backoff of retries: initial, maximum, give_up_after")


# Types of keys the validator knows, by name; a key with no hint here takes any value.
TARGET_HINTS = {
    "kind": {"type": "string"}, "url": {"type": "string"}, "user": {"type": "string"},
    "token": SECRET_REF, "build_token": SECRET_REF, "timeout": DURATION,
    "verify_tls": {"type": "boolean"}, "ca_bundle": {"type": "string"},
    "region": {"type": "string"}, "profile": {"type": "string"}, "role_arn": {"type": "string"},
    "endpoint_url": {"type": "string"}, "cwd": {"type": "string"}, "env": STRING_MAP,
    "fail": {"type": "boolean"},
}
RUN_HINTS = {
    "target": {"type": "string", "description": "a target's name under targets:"},
    "job": {"type": "string"}, "parameters": STRING_MAP, "unique": {"type": "boolean"},
    "delay": DURATION, "project": {"type": "string"}, "source_version": {"type": "string"},
    "env": STRING_MAP, "buildspec_override": {"type": "string"},
    "compute_type_override": {"type": "string"}, "name": {"type": "string"},
    "command": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                "description": "argv list, literal; payload values reach it only as BRIDGE_* variables"},
    "cwd": {"type": "string"}, "timeout": DURATION,
}


def _target(kind: str) -> dict:
    cls = target_spec(kind)
    keys = dict(cls.config_keys)
    keys.setdefault("kind", True)
    keys.setdefault("retry", False)
    keys.setdefault("policy", False)
    hints = {**TARGET_HINTS, "kind": {"const": kind}, "retry": _retry(),
             "policy": _policy(config.POLICY_KEYS),
             **{k: SECRET_REF for k in getattr(cls, "secret_keys", ())}}
    return _object(keys, hints, required=[k for k, req in keys.items() if req])


def _run(kind: str) -> dict:
    keys = dict(target_spec(kind).run_keys)
    keys.setdefault("target", True)
    return _object(keys, RUN_HINTS, required=[k for k, req in keys.items() if req],
                   description=f"run: for a target of kind {kind}")


def _targets() -> dict:
    kinds = sorted(TARGET_KINDS)
    target = {"type": "object", "required": ["kind"],
              "properties": {"kind": {"enum": kinds}},
              "allOf": [{"if": {"properties": {"kind": {"const": k}}, "required": ["kind"]},
                         "then": _target(k)} for k in kinds]}
    return {"type": "object", "additionalProperties": target,
            "description": "build targets by name: kind jenkins, codebuild, exec (or memory)"}


def _sources() -> dict:
    report = _object(config.REPORT_KEYS, {"token": SECRET_REF, "api_url": {"type": "string"},
                                          "timeout": DURATION, "retry": _retry()},
                     required=["token"], description="commit statuses back to the git host")
    forms = list(dict.fromkeys(f for p in providers.PROVIDERS.values() for f in getattr(p, "ACCEPT", ())))
    hints = {"provider": {"enum": list(providers.names())},
             "secrets": {"anyOf": [SECRET_REF, {"type": "array", "items": SECRET_REF, "minItems": 1}]},
             "accept": {"anyOf": [{"enum": forms}, {"type": "array", "items": {"enum": forms},
                                                    "minItems": 1}],
                        "description": "GitLab: how deliveries authenticate: token (X-Gitlab-Token), "
                                       "signature (a whsec_ signing token), or both while rotating"},
             "clone_url": {"type": "string"}, "clone_token": SECRET_REF, "report": report,
             **_reconcile_source()}
    source = _object(config.SOURCE_KEYS, hints, required=["provider", "secrets"])
    return {"type": "object", "minProperties": 1, "additionalProperties": source,
            "description": "webhook endpoints by name: POST /hooks/<name>"}


def _reconcile_source() -> dict:
    """A source's `reconcile:` and `watch:` (config/reconcile.py)."""
    hook = _object(config.HOOK_KEYS, {"id": POSITIVE, "repo": {"type": "string"},
                                      "project": {"type": "string"}, "org": {"type": "string"}},
                   required=["id"], description="a webhook by the host's id, with its repo/project or org")
    reconcile = _object(config.RECONCILE_KEYS, {"token": SECRET_REF, "api_url": {"type": "string"},
                                                "timeout": DURATION,
                                                "hooks": {"type": "array", "items": hook}},
                        required=["token"],
                        description="API access to recover missed deliveries (hooks' delivery logs)")
    entry = _object(config.WATCH_KEYS, {"repo": {"type": "string"}, "branches": PATTERNS,
                                        "tags": PATTERNS}, required=["repo"])
    watch = {"type": "array", "items": {"anyOf": [{"type": "string"}, entry]},
             "description": "repositories whose branch heads and tags reconcile compares with "
                            "the deliveries"}
    return {"reconcile": reconcile, "watch": watch}


def _rules() -> dict:
    on_hints = {key: PATTERNS for key in config.ON_KEYS}
    on_hints["events"] = {"anyOf": [{"enum": list(KINDS)},
                                    {"type": "array", "items": {"enum": list(KINDS)}, "minItems": 1}]}
    types = {"anyOf": [{"enum": list(PULL_ACTIONS)},
                       {"type": "array", "items": {"enum": list(PULL_ACTIONS)}, "minItems": 1}]}
    authors = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
               "description": f"author associations ({', '.join(AUTHOR_ASSOCIATIONS)}) or user names"}
    pull = _object(config.PULL_KEYS, {**{k: PATTERNS for k in config.PULL_KEYS}, "types": types},
                   description="as GitHub Actions' on: pull_request (branches = the base branch)")
    on_hints["pull_request"] = {"anyOf": [{"type": "null"}, pull]}
    on_hints["forks"] = {"anyOf": [{"enum": ["skip", "run"]},
                                   _object(config.FORKS_KEYS, {"authors": authors}, required=["authors"])],
                         "description": "pull requests from forks: skip (default), run, or these authors"}
    comment = _object(config.COMMENT_KEYS, {"pattern": {"type": "string", "minLength": 1}, "authors": authors},
                      required=["pattern"], description="a pull request comment that rebuilds its head")
    on_hints["comment"] = {"anyOf": [{"type": "string", "minLength": 1}, comment]}
    hints = {"name": {"type": "string", "minLength": 1}, "description": {"type": "string"},
             "on": _object(config.ON_KEYS, on_hints, description="which events: as GitHub Actions' on:"),
             "run": {"anyOf": [_run(k) for k in sorted(TARGET_KINDS)]},
             "on_unknown_files": {"enum": ["run", "skip"]}, "context": {"type": "string"},
             "report": {"type": "boolean"}, "report_skipped": {"type": "boolean"},
             "policy": _policy(config.RULE_POLICY_KEYS),
             "watch": {"type": "boolean",
                       "description": "reconcile compares the rule's branch heads and tags with the deliveries"}}
    rule = _object(config.RULE_KEYS, hints, required=["name", "on", "run"])
    return {"type": "array", "items": rule}


def _settings() -> dict:
    follow = _object(config.FOLLOW_KEYS, {**{k: DURATION for k in config.FOLLOW_KEYS},
                                          "concurrency": POSITIVE})
    mirrors = _object(config.MIRRORS_KEYS, {**{k: DURATION for k in config.MIRRORS_KEYS},
                                            "max_size": SIZE})
    ui = _object(config.UI_KEYS, {
        "trusted_user_header": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9-]*$"},
        "trusted_proxies": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                            "minItems": 1}]}},
        description="the delivery page (/ui/): a user header set by the proxies named here")
    hints = {"durability": {"enum": ["full", "normal"]}, "max_body_bytes": POSITIVE,
             "workers": POSITIVE, "dispatcher_concurrency": POSITIVE, "lease_seconds": DURATION,
             "poll_interval": DURATION, "database_url": {"type": "string"},
             "admin_token": SECRET_REF, "follow": follow, "mirrors": mirrors,
             "log_level": {"enum": list(LOG_LEVELS)}, "ui": ui,
             "reconcile": _object(config.RECONCILE_SETTINGS_KEYS,
                                  {"interval": DURATION, "since": DURATION,
                                   "max_redeliveries": POSITIVE, "enabled": {"type": "boolean"}})}
    return _object(config.SETTINGS_KEYS, hints)


def rules_schema() -> dict:
    """The JSON Schema of rules.yaml."""
    sections = {"sources": _sources(), "targets": _targets(), "rules": _rules(),
                "settings": _settings()}
    schema = _object(config.TOP_KEYS, sections, required=["sources"])
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "bridge rules.yaml",
            "description": "Sources, targets, rules and settings of the bridge. `cibridge check` "
                           "validates fully and explains every problem with its line.",
            **schema}
