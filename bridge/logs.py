"""Logging: one JSON object per line on stdout (journald), every line carrying the delivery id.

Input: standard `logging` records with `extra={"delivery": ...}`. Output: JSON lines. Bodies and
secret-bearing headers are never passed to a logger, so nothing here has to scrub them.
gunicorn's own lines (worker timeouts, boot failures) use the same format through
`GunicornLogger` (gunicorn's `logger_class = "bridge.logs.GunicornLogger"`).
"""
from __future__ import annotations

import json
import logging
import sys
import time

from gunicorn.glogging import Logger as _GunicornLogger

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# Built once: json.dumps with an argument builds an encoder per call.
_ENCODE = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonFormatter(logging.Formatter):
    # (whole second, its text): strftime once a second, not once a line. One tuple, replaced
    # whole, so threads never see a second with another second's text.
    _second = (None, "")

    def format(self, record: logging.LogRecord) -> str:
        second, text = self._second
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        out = {
            "time": f"{text}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "delivery": getattr(record, "delivery", None),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _ENCODE(out)


def setup(level: str = "INFO", stream=None) -> None:
    """Send the bridge's logs to stdout as JSON lines (idempotent)."""
    root = logging.getLogger("bridge")
    if any(getattr(h, "_bridge", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler._bridge = True
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


class GunicornLogger(_GunicornLogger):
    """gunicorn's error log as JSON lines, on the stream gunicorn's config names (stderr: journald)."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
