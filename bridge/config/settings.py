"""Configuration settings: rules.yaml's `settings:` section (and the retry policies that targets and
reports share) checked into `Settings`.

Input: the parsed `settings:` mapping with its lines. Output: `Settings` over the defaults, each
problem added to the load's `Problems`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import Any

from bridge.config import secrets as secret_refs
from bridge.config.keys import FOLLOW_KEYS, MIRRORS_KEYS, RETRY_KEYS, SETTINGS_KEYS, UI_KEYS
from bridge.config.model import Settings, UiSettings
from bridge.config.problems import as_mapping, maybe_secret
from bridge.config.reconcile import parse_policy
from bridge.errors import InvalidValue, did_you_mean
from bridge.logs import LEVELS as LOG_LEVELS
from bridge.policies import FollowPolicy, MirrorPolicy, RetryPolicy, parse_duration, parse_size


def parse_settings(raw, problems, environ) -> Settings:
    if raw is None:
        return Settings()
    raw = as_mapping(raw, problems, 1, "settings")
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
            url = maybe_secret(value, problems, line, environ, None)
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
                values[key] = maybe_secret(value, problems, line, environ, None)
        elif key == "follow":
            values[key] = _follow(value, problems, line)
        elif key == "mirrors":
            values[key] = _mirrors(value, problems, line)
        elif key == "log_level":
            _log_level(value, problems, line, values)
        elif key == "ui":
            values[key] = _ui(value, problems, line)
        elif key == "reconcile":
            values[key] = parse_policy(value, problems, line)
    return Settings(**values)


_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def _ui(raw, problems, line) -> UiSettings:
    """`settings.ui: {trusted_user_header, trusted_proxies}` over the defaults."""
    spec = as_mapping(raw, problems, line, "settings.ui")
    if spec is None:
        return UiSettings()
    problems.unknown_keys(spec, UI_KEYS, "settings.ui")
    values: dict[str, Any] = {}
    if "trusted_user_header" in spec:
        header = spec["trusted_user_header"]
        if not isinstance(header, str) or not _HEADER_NAME.match(header):
            problems.add(spec.line_of("trusted_user_header"), "settings.ui.trusted_user_header must "
                         "be a header name such as X-Remote-User")
        else:
            values["trusted_user_header"] = header
    if "trusted_proxies" in spec:
        proxies = spec["trusted_proxies"]
        proxies = [proxies] if isinstance(proxies, str) else proxies
        bad = [p for p in proxies or [None] if not _network(p)] if isinstance(proxies, list) else [proxies]
        if bad:
            problems.add(spec.line_of("trusted_proxies"), "settings.ui.trusted_proxies must be a list "
                         f"of addresses or networks (127.0.0.1, 10.0.0.0/8), not {bad[0]!r}")
        else:
            values["trusted_proxies"] = tuple(proxies)
    return UiSettings(**values)


def _network(value) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError):
        return False
    return True


def _log_level(value, problems, line, values) -> None:
    """settings.log_level: one of LOG_LEVELS (the flag and environment override it)."""
    if isinstance(value, str) and value.strip().lower() in LOG_LEVELS:
        values["log_level"] = value.strip().lower()
    else:
        problems.add(line, f"settings.log_level must be one of {', '.join(LOG_LEVELS)}, "
                           f"not '{value}'" + did_you_mean(str(value), LOG_LEVELS))


def _follow(raw, problems, line) -> FollowPolicy:
    spec = as_mapping(raw, problems, line, "settings.follow")
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
    spec = as_mapping(raw, problems, line, "settings.mirrors")
    if spec is None:
        return MirrorPolicy()
    problems.unknown_keys(spec, MIRRORS_KEYS, "settings.mirrors")
    values: dict[str, Any] = {}
    for key, value in spec.items():
        try:
            if key == "max_size":
                values[key] = parse_size(value)
                if values[key] < 1:
                    raise InvalidValue(f"'{value}' is not positive")
            elif key in MIRRORS_KEYS:
                values[key] = parse_duration(value)    # refuses YAML .nan/.inf too
                if values[key] <= 0:
                    raise InvalidValue(f"'{value}' is not positive")
        except ValueError as exc:
            values.pop(key, None)
            problems.add(spec.line_of(key), f"settings.mirrors.{key}: {exc}")
    return MirrorPolicy(**values)

def retry_policy(spec, problems, where: str, base: RetryPolicy) -> RetryPolicy:
    """`retry: {initial, maximum, give_up_after}` under `spec`, over the defaults in `base`."""
    raw = as_mapping(spec["retry"], problems, spec.line_of("retry"), f"{where} retry")
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
