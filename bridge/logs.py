"""Logging: one line per event on stdout, every line carrying the delivery id.

Input: standard `logging` records with `extra={"delivery": ...}`, the level (`--log-level` >
BRIDGE_LOG_LEVEL > settings.log_level > info) and the format (`--log-format` / BRIDGE_LOG_FORMAT:
`auto`, `json`, `text`). Output: JSON lines, or readable text lines on a terminal; under journald
(JOURNAL_STREAM names our stream) each line starts with its syslog priority (`<4>`), which journald
strips and files as the entry's PRIORITY. Bodies and secret-bearing headers are never passed to a
logger, so nothing here has to scrub them. gunicorn's own lines (worker timeouts, boot failures)
use the same format through `GunicornLogger` (gunicorn's `logger_class`), built on first use so
that only the processes running gunicorn import it.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "json", "text")
LEVEL_ENV = "BRIDGE_LOG_LEVEL"
FORMAT_ENV = "BRIDGE_LOG_FORMAT"
DEFAULT_LEVEL = "info"
# sd-daemon(3): the prefix journald reads as the line's priority (SyslogLevelPrefix=yes).
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
                   logging.DEBUG: 7}

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# Built once: json.dumps with an argument builds an encoder per call.
_ENCODE = json.JSONEncoder(default=str, ensure_ascii=False).encode
_COMPACT = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":")).encode


def _extras(record: logging.LogRecord, skip) -> dict:
    return {key: value for key, value in record.__dict__.items()
            if key not in _STANDARD and key not in skip and not key.startswith("_")}


def _priority(record: logging.LogRecord) -> str:
    level = record.levelno
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if level >= threshold:
            return f"<{SYSLOG_PRIORITY[threshold]}>"
    return "<7>"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; `journald=True` puts the syslog priority before it."""

    # (whole second, its text): strftime once a second, not once a line. One tuple, replaced
    # whole, so threads never see a second with another second's text.
    _second = (None, "")

    def __init__(self, *, journald: bool = False):
        super().__init__()
        self.journald = journald

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
        out.update(_extras(record, out))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        line = _ENCODE(out)
        return _priority(record) + line if self.journald else line


class TextFormatter(logging.Formatter):
    """For a human at a terminal: `12:00:01 INFO  [delivery] message  key=value ...`, one line
    per event (a traceback follows on its own lines)."""

    def __init__(self, *, journald: bool = False):
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        delivery = getattr(record, "delivery", None)
        parts = [f"{stamp} {record.levelname:<7}"]
        if delivery:
            parts.append(f"[{delivery}]")
        parts.append(record.getMessage())
        extras = _extras(record, {"delivery"})
        if extras:
            parts.append(" ".join(f"{k}={_short(v)}" for k, v in extras.items() if v is not None))
        line = " ".join(p for p in parts if p)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return _priority(record) + line if self.journald else line


def _short(value) -> str:
    if not isinstance(value, str):
        return _COMPACT(value)
    return value if value and " " not in value and '"' not in value else _ENCODE(value)


def under_journald(stream, environ=os.environ) -> bool:
    """True when `stream` is the journal connection systemd made (JOURNAL_STREAM holds its
    device:inode; a child whose output goes elsewhere inherits the variable, so it is checked)."""
    value = environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def say(text: str, level: int = logging.INFO, stream=None) -> None:
    """A plain line for a human (the supervisor's "listening on", start-up problems) on stderr,
    with its priority prefix under journald like every log line."""
    stream = stream or sys.stderr
    prefix = f"<{SYSLOG_PRIORITY.get(level, 6)}>" if under_journald(stream) else ""
    print("\n".join(prefix + line for line in text.splitlines()), file=stream, flush=True)


def formatter_for(stream, environ=os.environ) -> logging.Formatter:
    """JSON unless text is asked for or (`auto`, the default) the stream is a terminal; the
    journald priority prefix whenever the stream is the journal."""
    journald = under_journald(stream, environ)
    fmt = (environ.get(FORMAT_ENV) or "auto").strip().lower()
    if fmt not in FORMATS:
        fmt = "auto"
    if fmt == "text" or (fmt == "auto" and not journald and _isatty(stream)):
        return TextFormatter(journald=journald)
    return JsonFormatter(journald=journald)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def resolve_level(settings_level: str | None = None, environ=os.environ) -> str:
    """BRIDGE_LOG_LEVEL (which `--log-level` sets) > settings.log_level > info. An unknown value
    in the environment is skipped (the flag and the settings are validated where they are read)."""
    for value in (environ.get(LEVEL_ENV), settings_level):
        if value and value.strip().lower() in LEVELS:
            return value.strip().lower()
    return DEFAULT_LEVEL


def setup(level: str | None = None, stream=None) -> None:
    """Send the bridge's logs to stdout (idempotent; a second call only sets the level).
    `level`: default from the environment (`resolve_level()`)."""
    root = logging.getLogger("bridge")
    if any(getattr(h, "_bridge", False) for h in root.handlers):
        if level:    # else keep what apply_settings set
            root.setLevel(level.upper())
        return
    root.setLevel((level or resolve_level()).upper())
    # Neither format shows where a call was made or from which thread: records skip looking
    # them up (the "Optimization" section of Python's logging HOWTO).
    logging._srcfile = None
    logging.logThreads = False
    stream = stream or sys.stdout
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(stream))
    handler._bridge = True
    root.addHandler(handler)
    root.propagate = False


def apply_settings(settings) -> str:
    """The level once rules.yaml is loaded: the flag or environment still win over
    settings.log_level. Returns the level in force."""
    level = resolve_level(getattr(settings, "log_level", None))
    logging.getLogger("bridge").setLevel(level.upper())
    return level


def _gunicorn_logger_class():
    from gunicorn.glogging import Logger

    class GunicornLogger(Logger):
        """gunicorn's error log in the bridge's format, on the stream gunicorn's config names
        (stderr: journald)."""

        def setup(self, cfg):
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(formatter_for(getattr(handler, "stream", None)))

    GunicornLogger.__module__, GunicornLogger.__qualname__ = __name__, "GunicornLogger"
    return GunicornLogger


def __getattr__(name):
    """`bridge.logs.GunicornLogger` (gunicorn's `logger_class` names it), made when gunicorn asks:
    `cibridge --help` and the operator commands never import gunicorn."""
    if name == "GunicornLogger":
        globals()[name] = cls = _gunicorn_logger_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
