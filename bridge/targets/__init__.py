"""Registry of target kinds: a plain dict from `kind:` to its adapter class, with a helpful miss.

Input: a kind name from rules.yaml. Output: the `Target` subclass that runs it (`target_class`,
imported lazily: only a dispatcher builds targets) or the one that validates it (`target_spec`:
its keys and checks, without boto3 or python-jenkins, so web workers never import them).
"""
from __future__ import annotations

import importlib

from bridge.errors import did_you_mean
from bridge.targets.base import Target

TARGET_KINDS = {
    "exec": "bridge.targets.exec:ExecTarget",
    "memory": "bridge.targets.memory:MemoryTarget",
    "jenkins": "bridge.targets.jenkins:JenkinsTarget",
    "codebuild": "bridge.targets.codebuild:CodeBuildTarget",
}

#: The class each kind is validated with: the kind's keys and checks, none of its client libraries.
TARGET_SPECS = {
    "exec": "bridge.targets.exec:ExecTarget",
    "memory": "bridge.targets.memory:MemoryTarget",
    "jenkins": "bridge.targets.jenkins_spec:JenkinsSpec",
    "codebuild": "bridge.targets.codebuild_spec:CodeBuildSpec",
}


def unknown_kind_message(kind: str) -> str:
    return (f"unknown target kind '{kind}'" + did_you_mean(kind, TARGET_KINDS)
            + f"; known kinds: {', '.join(sorted(TARGET_KINDS))}")


def target_class(kind: str) -> type[Target]:
    """The class a dispatcher builds a target of `kind` with (imports its client library)."""
    return _imported(TARGET_KINDS, kind)


def target_spec(kind: str) -> type[Target]:
    """The class rules.yaml's `kind` is validated with: `config_keys`, `run_keys`, `secret_keys`,
    `literal_keys`, `validate`, `validate_run`, `with_state_dir`, the same as target_class(kind)'s."""
    return _imported(TARGET_SPECS, kind)


_CLASSES: dict = {}     # (module:attr) -> the class, once imported (a load asks per rule)


def _imported(table: dict[str, str], kind: str) -> type[Target]:
    try:
        where = table[kind]
    except KeyError:
        raise KeyError(unknown_kind_message(kind)) from None
    cls = _CLASSES.get(where)
    if cls is None:
        module_name, _, attr = where.partition(":")
        cls = _CLASSES[where] = getattr(importlib.import_module(module_name), attr)
    return cls


__all__ = ["TARGET_KINDS", "TARGET_SPECS", "Target", "target_class", "target_spec", "unknown_kind_message"]
