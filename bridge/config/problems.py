"""Configuration checking helpers: the problems accumulator and secret resolution shared by every part
of the validator (load, settings, sources, rulecheck).

Input: parsed YAML values with their lines. Output: problems as `rules.yaml:LINE: message`, and
secret values (or None when loading without secrets, see `reading_secrets`).
"""
from __future__ import annotations

import contextlib
import contextvars
import os

from bridge.config import secrets as secret_refs
from bridge.config.yamlload import LineDict
from bridge.errors import SecretError, did_you_mean


class Problems:
    """Collects problems as 'file:LINE: [rule 'NAME': ]message', sorted by line at the end."""

    def __init__(self, filename: str):
        self.filename = filename
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, message: str, rule: str | None = None):
        prefix = f"rule '{rule}': " if rule is not None else ""
        self.items.append((line, f"{self.filename}:{line}: {prefix}{message}"))

    def unknown_keys(self, mapping: LineDict, allowed, where: str, rule=None):
        for key in mapping:
            if key not in allowed:
                self.add(mapping.line_of(key), f"unknown key '{key}' in {where}"
                                               + did_you_mean(key, allowed), rule)

    def messages(self) -> list[str]:
        return [m for _, m in sorted(self.items, key=lambda item: item[0])]


_BASE_DIR: contextvars.ContextVar = contextvars.ContextVar("rules_dir", default=None)
_RESOLVE: contextvars.ContextVar = contextvars.ContextVar("resolve_secrets", default=True)


@contextlib.contextmanager
def reading_secrets(path, resolve: bool):
    """While loading `path`: relative `${file:...}` references are relative to its directory, and
    with `resolve` False no secret is read (their syntax is still checked)."""
    token = _BASE_DIR.set(os.path.dirname(os.path.abspath(str(path))))
    resolving_token = _RESOLVE.set(resolve)
    try:
        yield
    finally:
        _RESOLVE.reset(resolving_token)
        _BASE_DIR.reset(token)


def resolving() -> bool:
    """Whether the load under way reads secrets (False: explain, `cibridge check --no-secrets`)."""
    return _RESOLVE.get()


def resolve_secret(ref, environ) -> str | None:
    """The value of a secret reference, or None when loading without secrets; raises SecretError
    naming the reference either way when its syntax is wrong."""
    if resolving():
        return secret_refs.resolve(ref, environ, _BASE_DIR.get())
    m = secret_refs.REFERENCE.match(ref) if isinstance(ref, str) else None
    if not m:
        raise SecretError(f"'{ref}' is not a secret reference (use ${{env:NAME}}, ${{file:PATH}} "
                          "or ${credential:NAME})")
    kind, name = m.groups()
    if kind == "credential" and ("/" in name or "\x00" in name or name in (".", "..")):
        raise SecretError(f"secret {ref}: a credential name cannot contain '/' or NUL")
    return None


def as_mapping(value, problems, line, what, rule=None) -> LineDict | None:
    if value is None:
        return None
    if not isinstance(value, LineDict):
        problems.add(getattr(value, "line", line), f"{what} must be a mapping", rule)
        return None
    return value


def maybe_secret(value, problems, line, environ, rule):
    if secret_refs.is_reference(value):
        try:
            return resolve_secret(value, environ)
        except SecretError as exc:
            problems.add(line, str(exc), rule)
            return None
    return value


#: Target/run keys whose problems point to the key's own line (the rest: the target's or run's).
_KEYED_PROBLEMS = ("retry_on_exit",)


def line_of_key(mapping: LineDict, message: str, default: int) -> int:
    """The line of the key a target's message starts with ("retry_on_exit must ..."), else
    `default`."""
    key = message.split(" ", 1)[0]
    return mapping.line_of(key) if key in _KEYED_PROBLEMS and key in mapping else default
