"""Registry of target kinds: a plain dict from `kind:` to its adapter class, with a helpful miss.

Input: a kind name from rules.yaml. Output: the `Target` subclass (imported lazily, so web
workers never import boto3 or python-jenkins).
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


def unknown_kind_message(kind: str) -> str:
    return (f"unknown target kind '{kind}'" + did_you_mean(kind, TARGET_KINDS)
            + f"; known kinds: {', '.join(sorted(TARGET_KINDS))}")


def target_class(kind: str) -> type[Target]:
    try:
        module_name, _, attr = TARGET_KINDS[kind].partition(":")
    except KeyError:
        raise KeyError(unknown_kind_message(kind)) from None
    return getattr(importlib.import_module(module_name), attr)


__all__ = ["TARGET_KINDS", "Target", "target_class", "unknown_kind_message"]
