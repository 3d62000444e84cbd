"""Secret references: `${env:NAME}`, `${file:PATH}`, `${credential:NAME}` -> the secret's value.

Input: a reference string from rules.yaml. Output: the value (str). Errors name the reference,
never the value; `${credential:NAME}` reads systemd's `$CREDENTIALS_DIRECTORY/NAME` (LoadCredential=).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from bridge.errors import SecretError

REFERENCE = re.compile(r"^\$\{(env|file|credential):([^}]+)\}$")
MAX_SECRET_FILE = 64 * 1024


def is_reference(value) -> bool:
    return isinstance(value, str) and REFERENCE.match(value) is not None


def resolve(ref: str, environ=os.environ, base_dir=None) -> str:
    """Resolve one reference; raise SecretError naming the reference when it cannot be read.

    A relative `${file:PATH}` is relative to `base_dir` (the directory of rules.yaml).
    """
    m = REFERENCE.match(ref) if isinstance(ref, str) else None
    if not m:
        raise SecretError(f"'{ref}' is not a secret reference (use ${{env:NAME}}, ${{file:PATH}} "
                          "or ${credential:NAME})")
    kind, name = m.groups()
    if kind == "env":
        value = environ.get(name)
        if not value:
            raise SecretError(f"secret {ref}: environment variable {name} is not set or empty")
        return value
    if kind == "credential":
        directory = environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretError(f"secret {ref}: $CREDENTIALS_DIRECTORY is not set "
                              "(add LoadCredential= to the systemd unit)")
        if "/" in name or "\x00" in name or name in (".", ".."):
            raise SecretError(f"secret {ref}: a credential name cannot contain '/' or NUL")
        path = Path(directory) / name
    else:
        path = Path(name)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise SecretError(f"secret {ref}: cannot read {path}: {exc.strerror}") from None
    except ValueError:   # a NUL in the path
        raise SecretError(f"secret {ref}: the path holds a NUL character") from None
    if len(data) > MAX_SECRET_FILE:
        raise SecretError(f"secret {ref}: {path} is larger than {MAX_SECRET_FILE} bytes")
    try:
        value = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise SecretError(f"secret {ref}: {path} is not UTF-8 text") from None
    if not value:
        raise SecretError(f"secret {ref}: {path} is empty")
    return value
