"""The AWS CodeBuild target kind as rules.yaml sees it: its keys and their checks, without boto3.

Input: a target's options and a rule's `run:` from rules.yaml. Output: problems as text. The
config (web workers too) validates with this class; the dispatcher runs `CodeBuildTarget`
(codebuild.py), its subclass.
"""
from __future__ import annotations

from typing import Any

from bridge.targets.base import Target

#: `env:` values CodeBuild resolves itself: {parameter_store: NAME} or {secrets_manager: ARN}.
ENV_REFERENCES = {"parameter_store": "PARAMETER_STORE", "secrets_manager": "SECRETS_MANAGER"}


class CodeBuildSpec(Target):
    """What rules.yaml may say for a CodeBuild target, and the checks on it."""

    kind = "codebuild"
    config_keys = {"kind": True, "region": True, "profile": False, "role_arn": False,
                   "endpoint_url": False, "retry": False}
    run_keys = {"target": True, "project": True, "source_version": False, "env": False,
                "buildspec_override": False, "compute_type_override": False}

    # --- configuration checks --------------------------------------------------------------

    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        if not isinstance(options.get("region"), str) or not options.get("region"):
            problems.append("region must be an AWS region such as eu-west-1")
        role = options.get("role_arn")
        if role is not None and (not isinstance(role, str) or not role.startswith("arn:")):
            problems.append(f"role_arn must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), not {role!r}")
        url = options.get("endpoint_url")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            problems.append(f"endpoint_url must be an http:// or https:// URL, not {url!r}")
        if "profile" in options and not isinstance(options["profile"], str):
            problems.append("profile must be the name of an AWS config profile")
        return problems

    @classmethod
    def validate_run(cls, run: dict[str, Any]) -> list[str]:
        problems = []
        if not isinstance(run.get("project"), str) or not run.get("project"):
            problems.append("'run.project' must be a CodeBuild project name")
        for key in ("source_version", "buildspec_override", "compute_type_override"):
            if key in run and not isinstance(run[key], str):
                problems.append(f"'run.{key}' must be a string")
        env = run.get("env", {})
        if not isinstance(env, dict):
            return problems + ["'run.env' must be a mapping of variable name to value"]
        for name, value in env.items():
            if str(name).startswith("CODEBUILD_"):
                problems.append(f"'run.env.{name}': names starting with CODEBUILD_ are reserved by CodeBuild")
            if isinstance(value, dict):
                if len(value) != 1 or next(iter(value)) not in ENV_REFERENCES \
                        or not isinstance(next(iter(value.values())), str):
                    problems.append(f"'run.env.{name}' must be a value, or one of "
                                    "{parameter_store: NAME} / {secrets_manager: ARN}")
            elif isinstance(value, (list, bool)) or value is None:
                problems.append(f"'run.env.{name}' must be a string (quote true/false)")
        return problems
