"""One error hierarchy for the whole bridge; every stage raises from here.

    BridgeError
    ├── ConfigError              rules.yaml is invalid (carries every problem, with file:line)
    ├── SecretError              a ${env:..}/${file:..}/${credential:..} reference cannot be resolved
    ├── DeliveryError            an HTTP delivery is refused (carries the status code)
    │   ├── VerificationFailed   401: missing/bad signature or token (names the header only)
    │   ├── UnknownSource        404
    │   ├── PayloadTooLarge      413
    │   └── BadPayload           400: verified, but not JSON or not a known shape
    ├── StoreUnavailable         503: the database could not take the write; nothing was accepted
    ├── TargetError              a target could not start a job
    │   ├── TargetUnavailable    transient: retry with backoff (connection, 5xx, throttling)
    │   └── TargetRejected       permanent: dead letter at once (404 job, 403, bad parameters)
    ├── StatusError              a git host did not take a commit status (carries the HTTP code)
    │   ├── StatusUnavailable    transient: post again with backoff (connection, 5xx, rate limit)
    │   └── StatusRejected       permanent: recorded as failed at once (bad token, no access)
    ├── InvalidValue             a duration, size or headers file a user gave is not valid (also a ValueError)
    ├── GlobError                a branch/path pattern is invalid (bridge/globs.py; also a ValueError)
    ├── YamlError                rules.yaml is not safe, well-formed YAML (bridge/config/yamlload.py)
    └── BindError                an address cannot be listened on (bridge/service/listener.py)

Builtin exceptions are left to programming errors (an interface not implemented, a lookup of a
name validation let through): they end in a traceback, never in a message.

Messages name the thing and the value (`job 'api/biuld' not found on target 'ci'`), never a
secret.
"""
from __future__ import annotations

import difflib


def did_you_mean(value, choices, template: str = "'{}'") -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {template.format(close[0])}?)" if close else ""


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """rules.yaml is invalid. `problems` holds every message, each 'file:LINE: ...'."""

    def __init__(self, problems):
        self.problems = list(problems) if not isinstance(problems, str) else [problems]
        super().__init__("\n".join(self.problems))


class SecretError(BridgeError):
    """A secret reference cannot be resolved. The message names the reference, never a value."""


class DeliveryError(BridgeError):
    status = 400

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class VerificationFailed(DeliveryError):
    status = 401


class UnknownSource(DeliveryError):
    status = 404


class PayloadTooLarge(DeliveryError):
    status = 413


class BadPayload(DeliveryError):
    status = 400


class InvalidValue(BridgeError, ValueError):
    """A value a user gave (a duration, a size, a headers file) is not valid; the message says how.
    Also a ValueError, so the parsers' callers (settings validation) may treat it as one."""


class StoreUnavailable(BridgeError):
    """The store could not commit; the delivery gets a 503 and nothing of it is kept."""


class TargetError(BridgeError):
    """A target could not start (or follow) a job."""


class TargetUnavailable(TargetError):
    """Transient: the dispatcher retries with backoff. `retry_after` (seconds) if the target said."""

    def __init__(self, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class TargetRejected(TargetError):
    """Permanent: the job goes to the dead letter at once."""


class StatusError(BridgeError):
    """A git host did not take a commit status. `code`: its HTTP status, None if it never answered."""

    def __init__(self, message: str, code: int | None = None):
        self.code = code
        super().__init__(message)


class StatusUnavailable(StatusError):
    """Transient: the poster posts again with backoff. `retry_after` (seconds) if the host said."""

    def __init__(self, message: str, code: int | None = None, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message, code)


class StatusRejected(StatusError):
    """Permanent (bad token, no access to the repository): recorded as failed, never posted again."""
