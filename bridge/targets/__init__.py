"""Registry of target kinds: a plain dict from `kind:` to its adapter class, with a helpful miss.

Input: a kind name from rules.yaml. Output: the `Target` subclass (imported lazily, so web
workers never import boto3 or python-jenkins).
"""
from __future__ import annotations

import difflib
import importlib

from .base import Job, Run, Target

TARGET_KINDS = {
    "exec": "bridge.targets.exec:ExecTarget",
    "memory": "bridge.targets.memory:MemoryTarget",
    "jenkins": "bridge.targets.jenkins:JenkinsTarget",
    "codebuild": "bridge.targets.codebuild:CodeBuildTarget",
}


def unknown_kind_message(kind: str) -> str:
    msg = f"unknown target kind '{kind}'"
    close = difflib.get_close_matches(str(kind), TARGET_KINDS, n=1)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    return msg + f"; known kinds: {', '.join(sorted(TARGET_KINDS))}"


def target_class(kind: str) -> type[Target]:
    try:
        module_name, _, attr = TARGET_KINDS[kind].partition(":")
    except KeyError:
        raise KeyError(unknown_kind_message(kind)) from None
    return getattr(importlib.import_module(module_name), attr)


__all__ = ["TARGET_KINDS", "Job", "Run", "Target", "target_class", "unknown_kind_message"]
