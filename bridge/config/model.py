"""Configuration model: the immutable values a validated rules.yaml becomes.

Input: values checked by config/load.py. Output: `Config` (sources, targets, rules, settings) and
its parts, which every later stage reads; `Config.ruleset` compiles the rules for matching.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bridge.config.reconcile import ReconcileConfig, ReconcilePolicy
from bridge.policies import (NO_POLICY, REPORT_RETRY, FollowPolicy, MirrorPolicy, Policies,
                             RetryPolicy, TargetPolicy)
from bridge.rules import RuleSet
from bridge.targets import target_class


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
class UiSettings:
    """`settings.ui`: who the delivery page (web/ui) trusts besides the local host and the admin
    token. A user named in `trusted_user_header` counts only on a request from one of
    `trusted_proxies` (addresses or networks); the proxies' X-Forwarded-Prefix and
    X-Forwarded-Proto are believed from them alone."""
    trusted_user_header: str | None = None
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")


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
    ui: UiSettings = UiSettings()
    reconcile: ReconcilePolicy = ReconcilePolicy()


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
    #: Keyword options of the provider's `verify` (GitLab: `accept`, from the source's `accept:`).
    verify_options: dict = field(default_factory=dict)
    #: API access for reconcile (`reconcile:`, else the `report:` token), or None.
    reconcile: ReconcileConfig | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TargetConfig:
    name: str
    kind: str
    options: dict = field(repr=False)
    retry: RetryPolicy = RetryPolicy()
    line: int = 0
    policy: TargetPolicy = NO_POLICY


@dataclass(frozen=True)
class Config:
    path: str
    version: str
    sources: dict
    targets: dict
    rules: tuple
    settings: Settings
    rule_reports: dict = field(default_factory=dict)     # rule name -> RuleReport
    rule_policies: dict = field(default_factory=dict)    # rule name -> {policy key: value}
    secrets_resolved: bool = True    # False: loaded for explain/check without reading secrets
    watches: tuple = ()              # WatchSpec: sources' watch: and rules' watch: true

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

    def policies(self) -> Policies:
        """Targets' `policy:` and rules' overrides, for the claim."""
        return Policies(targets={name: t.policy for name, t in self.targets.items()},
                        rules={name: own for name, own in self.rule_policies.items() if own})

    def __getstate__(self):
        # Pickled (service/handover.py) without the match index: rebuilt where it is used.
        return {k: v for k, v in self.__dict__.items() if k != "_ruleset"}

    @property
    def ruleset(self) -> RuleSet:
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
