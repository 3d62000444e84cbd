"""Policies as values: how long to retry, follow and keep mirrors (`RetryPolicy`, `FollowPolicy`,
`MirrorPolicy`), the readers of durations and sizes in rules.yaml, an HTTP `Retry-After`, and the
ONE backoff formula every retry loop uses. Plain values and functions: no I/O."""
from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

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
