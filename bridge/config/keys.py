"""Configuration key tables: the keys rules.yaml may hold at each level, and the limits on names and size.

Input: none (constants). Output: the tables the validator (config/load.py and its parts) and the
editor schema (config/schema.py) both read, so the two never disagree.
"""
from __future__ import annotations

import re

TOP_KEYS = ("sources", "targets", "rules", "settings")
SOURCE_KEYS = ("provider", "secrets", "accept", "clone_url", "clone_token", "clone_hosts", "report",
               "reconcile", "watch")
RULE_KEYS = ("name", "on", "run", "on_unknown_files", "description", "context", "report",
             "report_skipped", "allow_empty_sha", "policy", "watch")
ON_KEYS = ("source", "repo", "branches", "branches-ignore", "tags", "tags-ignore", "paths",
           "paths-ignore", "events", "pull_request", "forks", "comment")
#: `on:` keys that filter pushes and tags (not pull requests: those have on.pull_request's own).
PUSH_FILTER_KEYS = ("branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore")
PULL_KEYS = ("branches", "branches-ignore", "types", "paths", "paths-ignore")
COMMENT_KEYS = ("pattern", "authors")
FORKS_KEYS = ("authors",)
SETTINGS_KEYS = ("durability", "max_body_bytes", "workers", "dispatcher_concurrency",
                 "database_url", "lease_seconds", "poll_interval", "admin_token", "follow",
                 "mirrors", "header_timeout", "body_timeout", "log_level", "ui", "reconcile")
RETRY_KEYS = ("initial", "maximum", "give_up_after")
REPORT_KEYS = ("token", "api_url", "timeout", "retry")
FOLLOW_KEYS = ("interval", "max_interval", "give_up_after", "concurrency")
MIRRORS_KEYS = ("fetch_timeout", "max_size", "max_age")
UI_KEYS = ("trusted_user_header", "trusted_proxies")
#: A target's `policy:` (bridge.policies.TargetPolicy); a rule's may hold all but the breaker.
POLICY_KEYS = ("max_running", "rate", "group", "max_running_per_group", "on_newer", "debounce",
               "breaker")
RULE_POLICY_KEYS = tuple(k for k in POLICY_KEYS if k != "breaker")
BREAKER_KEYS = ("failures", "open_for")
RECONCILE_KEYS = ("token", "api_url", "hooks", "timeout")
HOOK_KEYS = ("id", "repo", "project", "org")
WATCH_KEYS = ("repo", "branches", "tags")
RECONCILE_SETTINGS_KEYS = ("interval", "since", "max_redeliveries", "enabled")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_RULES_FILE = 4 * 2**20
