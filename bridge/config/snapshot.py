"""Configuration snapshot: the rules a process runs, the last-good copy of rules.yaml in the state
directory, and the status file that says which version serves and why a reload was refused.

Input: rules path, state dir. Output: `(Config, problems)` to start or reload on; the snapshot
(which records the file it came from) and `rules-status.json` written atomically.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from bridge.config.load import load_config, read_rules_text, rules_version
from bridge.errors import ConfigError

log = logging.getLogger("bridge.serve")

LAST_GOOD = "rules.last-good.yaml"
# Beside the snapshot: the rules file it was taken from ({"path", "version", "time"}). A start
# falls back to the snapshot only for that same file, never for rules another file held.
LAST_GOOD_SOURCE = "rules.last-good.json"
# Set by `cibridge serve` for its children: their SIGHUP comes after the supervisor has validated
# rules.yaml and recorded the snapshot, so they load the snapshot instead of reading the file
# again (an edit in between would otherwise put them on rules the supervisor never accepted).
SUPERVISED = "BRIDGE_SUPERVISED"
STATUS = "rules-status.json"


# --- rules with a last-good fallback ---------------------------------------------------------

def record_good(state_dir, config, text: str, rules_path) -> None:
    """Remember a valid rules text and the file it came from: the snapshot every worker and the
    dispatcher load, until the next successful reload replaces it."""
    _write_atomic(Path(state_dir) / LAST_GOOD, text)
    _write_atomic(Path(state_dir) / LAST_GOOD_SOURCE, json.dumps(
        {"path": os.path.abspath(rules_path), "version": config.version, "time": time.time()}))
    write_status(state_dir, ok=True, version=config.version, problems=[])


def snapshot_source(state_dir) -> dict | None:
    """{"path", "version", "time"} of the snapshot, or None when it is not known which file it
    came from (written by an older bridge, or a crash between the two writes)."""
    try:
        source = json.loads((Path(state_dir) / LAST_GOOD_SOURCE).read_text(encoding="utf-8"))
        text = (Path(state_dir) / LAST_GOOD).read_bytes().decode("utf-8")
    except (OSError, ValueError):
        return None
    if not isinstance(source, dict) or source.get("version") != rules_version(text):
        return None
    return source


def _same_file(a, b) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def fallback_refusal(rules_path, state_dir) -> str | None:
    """Why the snapshot may not stand in for an invalid `rules_path` (None: it may). It may only
    when it was taken from that same file: rules another file held are not these rules."""
    snapshot = Path(state_dir) / LAST_GOOD
    source = snapshot_source(state_dir)
    if source is None:
        came_from = "a file it does not record (written by an older bridge)"
    elif not _same_file(source["path"], rules_path):
        came_from = f"another file, {source['path']}"
    else:
        return None
    return (f"{rules_path} is invalid, and the last good rules ({snapshot}) came from {came_from}, "
            f"not from {os.path.abspath(rules_path)}: refusing to start on them; fix "
            f"{rules_path}" + (f" or start with --rules {source['path']}" if source else ""))


def describe_rules(rules_path, version: str, problems=()) -> str:
    """Which file and version run, for the start line: `/etc/bridge/rules.yaml version 0123abcd`,
    or the last good version of that file when the file itself is invalid."""
    path = os.path.abspath(rules_path)
    if not problems:
        return f"{path} version {version}"
    return (f"{path} version {version}, its last good version: the file as it is now has "
            f"{len(problems)} problem(s) and is not in service")


def write_status(state_dir, *, ok: bool, version: str | None, problems: list[str]) -> None:
    """`rules-status.json`: the version serving and, after a refused reload, why (for /readyz);
    `success_time`, when rules.yaml was last accepted, outlives a refused reload (/metrics)."""
    now = time.time()
    _write_atomic(Path(state_dir) / STATUS, json.dumps(
        {"ok": ok, "version": version, "problems": problems[:50], "time": now,
         "success_time": now if ok else _last_success(state_dir)}))


def _last_success(state_dir) -> float | None:
    old = read_status(state_dir) or {}
    return old.get("success_time", old.get("time") if old.get("ok") else None)


def _write_atomic(path: Path, text: str) -> None:
    # The supervisor, the gunicorn master and the dispatcher may all record one reload at once,
    # and a signal handler may interrupt itself: a temporary file of its own for every call.
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_status(state_dir) -> dict | None:
    try:
        return json.loads((Path(state_dir) / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def has_snapshot(state_dir) -> bool:
    return (Path(state_dir) / LAST_GOOD).is_file()


def load_accepted(rules_path, state_dir):
    """(config, problems) for `cibridge web` / `cibridge dispatch` at start, whether `cibridge serve`
    started them or their own units did: the snapshot, never the file. Only a reload (SIGHUP) or
    a start of `cibridge serve` puts the file into service; a process that restarts alone (killed,
    Restart=on-failure, `systemctl restart bridge-web`) must not run an edit that its siblings do
    not, nor stop on a file that a reload refused. The very first start (no snapshot yet) takes
    the file and records it, and so does a start whose snapshot came from another file (or does
    not say which): those are not this file's rules, so an invalid file then starts nothing.
    Raises ConfigError if there is nothing valid to start on."""
    if not has_snapshot(state_dir):
        config, text, problems = load_file(rules_path)
        if problems:
            raise ConfigError(problems)
        record_good(state_dir, config, text, rules_path)
        return config, []
    refusal = fallback_refusal(rules_path, state_dir)
    if refusal is not None:
        return _start_on_file(rules_path, state_dir, refusal), []
    config, problems = accepted_or_file(rules_path, state_dir)
    if problems:
        log.warning("the last reload of %s was refused; starting on the last good rules (version %s)",
                    rules_path, config.version, extra={"problems": problems[:5]})
    else:
        warn_if_edited(rules_path, config)
    return config, problems


def warn_if_edited(rules_path, config) -> None:
    """Say so when rules.yaml was edited since `config` (the accepted rules) was loaded from it."""
    text, _ = _read_rules(rules_path)
    if text is not None and rules_version(text) != config.version:
        log.warning("%s was edited since the rules were last loaded; this process runs the "
                    "accepted rules (version %s) until a reload (SIGHUP)", rules_path,
                    config.version)


def _start_on_file(rules_path, state_dir, refusal: str):
    """load_accepted when the snapshot came from another file: `rules_path` as it is now, if
    valid (and recorded), else ConfigError with its problems and why the snapshot cannot stand in."""
    config, text, problems = load_file(rules_path)
    if problems:
        raise ConfigError(problems + [refusal])
    log.warning("the last accepted rules came from another file than %s (or do not say which); "
                "starting on it as it is now (version %s) and recording it",
                os.path.abspath(rules_path), config.version)
    record_good(state_dir, config, text, rules_path)
    return config


def _read_rules(rules_path) -> tuple[str | None, list[str]]:
    """(text, []) or (None, problems): read with load_config's limits, never raising."""
    try:
        return read_rules_text(rules_path), []
    except ConfigError as exc:
        return None, exc.problems


def load_file(rules_path):
    """(config, text, []) for rules.yaml as it is now, or (None, None, problems); never raises."""
    text, problems = _read_rules(rules_path)
    if problems:
        return None, None, problems
    try:
        return load_config(rules_path, text=text), text, []
    except ConfigError as exc:
        return None, None, exc.problems


def load_with_fallback(rules_path, state_dir):
    """(config, problems) for a booting worker or dispatcher: the rules the service last accepted
    (the snapshot taken at start and at each successful reload), not whatever the file holds now,
    so a worker that restarts between an edit and its reload serves what its siblings and the
    dispatcher serve. The file itself only when there is no snapshot yet. `problems`: why the
    last reload was refused, if it was."""
    try:
        # Bytes, as _read_rules reads the file: read_text would turn CRLF into LF and so give
        # the same rules another version.
        text = (Path(state_dir) / LAST_GOOD).read_bytes().decode("utf-8")
    except FileNotFoundError:
        return load_config(rules_path), []
    status = read_status(state_dir) or {}
    problems = [] if status.get("ok", True) else list(status.get("problems") or [])
    return load_config(rules_path, text=text), problems


def accepted_or_file(rules_path, state_dir):
    """`load_with_fallback`, but when the accepted rules no longer load here (a secret they name
    was removed, say, after a rotation in the file that nobody reloaded yet) the file as it is
    now, if valid, is recorded and used: a valid file is better than no service. Raises
    ConfigError naming the snapshot when neither loads."""
    try:
        return load_with_fallback(rules_path, state_dir)
    except ConfigError as exc:
        config, text, file_problems = load_file(rules_path)
        if not file_problems:
            log.warning("the last accepted rules no longer load (%s); starting on %s as it is "
                        "now (version %s) and recording it", "; ".join(exc.problems[:3]),
                        rules_path, config.version)
            record_good(state_dir, config, text, rules_path)
            return config, []
        raise ConfigError([f"{LAST_GOOD} (the last accepted rules): {p}" for p in exc.problems]
                          + file_problems) from exc


def validate_and_record(rules_path, state_dir) -> list[str]:
    """Validate rules.yaml; record it as last-good if valid. Returns the problems ([] if valid).
    Under `cibridge serve` a child's reload leaves this to the supervisor: it only reports what
    the supervisor recorded."""
    if os.environ.get(SUPERVISED):
        status = read_status(state_dir) or {}
        return [] if status.get("ok", True) else list(status.get("problems") or [])
    return validate_record_config(rules_path, state_dir)[1]


def validate_record_config(rules_path, state_dir):
    """`validate_and_record` that also returns what it accepted: (config, []) or (None, problems)."""
    config, text, problems = load_file(rules_path)
    if not problems:
        record_good(state_dir, config, text, rules_path)
        return config, []
    old = read_status(state_dir) or {}
    write_status(state_dir, ok=False, version=old.get("version"), problems=problems)
    return None, problems
