"""Policies as values: how long to retry, follow and keep mirrors (`RetryPolicy`, `FollowPolicy`,
`MirrorPolicy`), how much a target may take (`TargetPolicy`, `Policies`: concurrency, groups,
rate, debounce, breaker), the readers of durations, sizes and rates in rules.yaml, an HTTP
`Retry-After`, and the ONE backoff formula every retry loop uses. Plain values and functions: no I/O."""
from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bridge.errors import InvalidValue


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 5.0
    maximum: float = 600.0
    give_up_after: float = 86400.0


#: Status posts: the first retry soon (a blip), then back off to 5 minutes; old news after a day.
REPORT_RETRY = RetryPolicy(initial=2.0, maximum=300.0, give_up_after=86400.0)


@dataclass(frozen=True)
class FollowPolicy:
    """How the dispatcher follows started builds to their result (settings.follow)."""
    interval: float = 2.0            # the first check; later ones back off up to max_interval
    max_interval: float = 60.0
    give_up_after: float = 86400.0
    concurrency: int = 4             # builds asked about at once


@dataclass(frozen=True)
class MirrorPolicy:
    """Limits of the git mirrors that compute changed files (settings.mirrors)."""
    fetch_timeout: float = 120.0     # seconds per clone URL tried
    max_size: int = 5 * 2**30        # all mirrors together; least recently used evicted first
    max_age: float = 30 * 86400.0    # a mirror unused this long is evicted


def backoff(policy: RetryPolicy, attempt: int, rand: Callable[[], float]) -> float:
    """Seconds before retry number `attempt` (1 = the first try failed): exponential backoff from
    `policy.initial` up to `policy.maximum` with full jitter (`rand()` in [0, 1)); the exponent is
    capped so floats never overflow."""
    return rand() * min(policy.maximum, policy.initial * 2 ** min(attempt - 1, 60))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}


def parse_duration(value) -> float:
    """'5s', '10m', '24h', '30d', '2w' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise InvalidValue(f"'{value}' is not a duration")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidValue(f"'{value}' is not a finite duration")
        if value < 0:
            raise InvalidValue(f"'{value}' is negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise InvalidValue(f"'{value}' is not a duration (use e.g. 5s, 10m, 24h, 30d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text) -> int:
    """'5G', '500M', '1.5GiB', '100K', plain bytes (binary multiples), or an int of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise InvalidValue(f"not a size: {text!r} (use e.g. 5G, 500M)")
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text if isinstance(text, str) else "",
                     re.I)
    if not m:
        raise InvalidValue(f"not a size: {text!r} (use e.g. 5G, 500M)")
    return int(float(m[1]) * _SIZE_UNITS[m[2].upper()])


#: The longest wait a Retry-After header may ask of us (a typo of a server must not park a job).
MAX_RETRY_AFTER = 3600.0


def retry_after(value: str | None, now=time.time) -> float | None:
    """Seconds an HTTP `Retry-After` asks for (delta-seconds or an HTTP date), capped at
    MAX_RETRY_AFTER; None when absent or unreadable. Jenkins and the git hosts' APIs alike."""
    if not value:
        return None
    try:
        return min(max(0.0, float(value)), MAX_RETRY_AFTER)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        return min(max(0.0, when - now()), MAX_RETRY_AFTER)


# --- protecting the build farm: a target's (or rule's) `policy:` --------------------------------

#: What a newer job of a group does to the older ones: wait behind them, replace the waiting
#: ones, or replace the waiting ones and cancel a running build.
ON_NEWER = ("queue", "coalesce", "cancel")
#: The group a job belongs to when the policy names none: its rule and its ref.
DEFAULT_GROUP = "${rule}/${ref}"
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
               "hour": 3600, "d": 86400, "day": 86400}


@dataclass(frozen=True)
class Rate:
    """A token bucket: up to `count` starts per `per` seconds, refilled evenly, `count` at most
    in a burst."""
    count: int
    per: float

    @property
    def per_second(self) -> float:
        return self.count / self.per

    def __str__(self) -> str:
        for unit, secs in (("day", 86400), ("h", 3600), ("min", 60)):
            if self.per % secs == 0:
                n = self.per / secs
                return f"{self.count}/{'' if n == 1 else f'{n:g}'}{unit}"
        return f"{self.count}/{self.per:g}s"


def parse_rate(value) -> Rate:
    """'30/min', '5/s', '100/h', '10/5m' -> Rate."""
    m = _RATE.match(str(value)) if isinstance(value, str) else None
    if not m or int(m.group(1)) < 1:
        raise InvalidValue(f"'{value}' is not a rate (use e.g. 30/min, 5/s, 100/h)")
    per = float(m.group(2) or 1) * _RATE_UNITS[m.group(3)]
    if per <= 0:
        raise InvalidValue(f"'{value}' is not a rate (use e.g. 30/min, 5/s, 100/h)")
    return Rate(int(m.group(1)), per)


@dataclass(frozen=True)
class Breaker:
    """Open after `failures` transient failures in a row; after `open_for` seconds one probe
    goes through, and its success closes the breaker (its failure opens it again)."""
    failures: int = 5
    open_for: float = 60.0


@dataclass(frozen=True)
class TargetPolicy:
    """How much a target takes (`policy:` of a target; a rule's `policy:` overrides keys of it
    for that rule's jobs). Enforced by the store's claim, across every dispatcher.

    `max_running`: builds started and not finished, across all instances (a rule's own
    `max_running` counts that rule's jobs). `rate`: a token bucket on starts. `group`: the
    template naming a job's group, rendered at ingest (default: the rule and the ref).
    `max_running_per_group`: the same within one group. `on_newer`: see ON_NEWER. `debounce`:
    seconds a job waits for a newer one of its group. `breaker`: see `Breaker` (a target's only).
    """
    max_running: int | None = None
    rate: Rate | None = None
    group: str = DEFAULT_GROUP
    max_running_per_group: int | None = None
    on_newer: str = "queue"
    debounce: float = 0.0
    breaker: Breaker | None = None

    @property
    def limits(self) -> bool:
        """Whether the claim has anything to enforce for these jobs."""
        return self != TargetPolicy(group=self.group)


NO_POLICY = TargetPolicy()


@dataclass(frozen=True)
class Policies:
    """Every target's policy and the keys each rule overrides: what the store's claim enforces.
    `rules` maps a rule's name to {key: value} (see config/policy.py)."""
    targets: dict = field(default_factory=dict)      # target name -> TargetPolicy
    rules: dict = field(default_factory=dict)        # rule name -> {key: value}

    def of(self, target: str, rule: str) -> TargetPolicy:
        """The policy a job of `rule` on `target` runs under (the target's, with the rule's keys)."""
        base = self.targets.get(target, NO_POLICY)
        own = self.rules.get(rule)
        if not own:
            return base
        return replace(base, **{k: v for k, v in own.items() if k not in ("max_running", "rate")})

    def rule_limits(self, rule: str) -> tuple[int | None, Rate | None]:
        """A rule's own max_running and rate (counted over that rule's jobs alone)."""
        own = self.rules.get(rule) or {}
        return own.get("max_running"), own.get("rate")

    @property
    def active(self) -> bool:
        """Whether any target or rule has a policy the claim must look at."""
        return any(p.limits for p in self.targets.values()) or any(self.rules.values())
