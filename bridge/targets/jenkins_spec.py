"""The Jenkins target kind as rules.yaml sees it: its keys and their checks, without python-jenkins.

Input: a target's options and a rule's `run:` from rules.yaml. Output: problems as text. The
config (web workers too) validates with this class; the dispatcher runs `JenkinsTarget`
(jenkins.py), its subclass.
"""
from __future__ import annotations

import re
from typing import Any

from bridge.targets.base import Target

#: The parameter that keeps Jenkins from merging two pushes into one queued build.
UNIQUE_PARAMETER = "BRIDGE_DELIVERY"
#: Query parameters Jenkins (or python-jenkins) reads itself: never job parameters.
RESERVED_PARAMETERS = ("token", "delay", "cause")
DEFAULT_TIMEOUT = 10.0
#: Target options that must be secret references in rules.yaml, never literal text (config/load.py).
SECRET_OPTIONS = ("token", "build_token")

DELAY = re.compile(r"^(\d+)(sec)?$")


class JenkinsSpec(Target):
    """What rules.yaml may say for a Jenkins target, and the checks on it."""

    kind = "jenkins"
    secret_keys = SECRET_OPTIONS
    config_keys = {"kind": True, "url": True, "user": False, "token": False, "build_token": False,
                   "timeout": False, "verify_tls": False, "ca_bundle": False, "retry": False}
    run_keys = {"target": True, "job": True, "parameters": False, "unique": False, "delay": False}

    # --- configuration checks --------------------------------------------------------------

    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        url = options.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^/?#\s]+", url):
            problems.append(f"url must be an http:// or https:// URL, not {url!r}")
        elif "?" in url or "#" in url:
            problems.append("url must not carry a query string or fragment")
        if ("user" in options) != ("token" in options):
            problems.append("'user' and 'token' go together (the token is the user's API token)")
        timeout = options.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            problems.append(f"timeout must be a positive number of seconds, not {timeout!r}")
        if not isinstance(options.get("verify_tls", True), bool):
            problems.append("verify_tls must be true or false")
        if "ca_bundle" in options and not isinstance(options["ca_bundle"], str):
            problems.append("ca_bundle must be the path of a PEM file")
        return problems

    @classmethod
    def validate_run(cls, run: dict[str, Any]) -> list[str]:
        problems = []
        name = run.get("job")
        if not isinstance(name, str) or not name.strip("/"):
            problems.append("'run.job' must be a job name or folder path such as 'team/api/build'")
        elif name.startswith("/") or name.endswith("/") or "//" in name:
            problems.append(f"'run.job' {name!r}: write folder paths as 'team/api/build'")
        elif name.startswith("job/"):
            problems.append(f"'run.job' {name!r}: write the folder path ('team/api/build'), "
                            "not the URL path ('job/team/job/api/job/build')")
        unique = run.get("unique", True)
        if not isinstance(unique, bool):
            problems.append("'run.unique' must be true or false")
        params = run.get("parameters", {})
        if not isinstance(params, dict):
            problems.append("'run.parameters' must be a mapping of parameter name to value")
            params = {}
        for key, value in params.items():
            if key in RESERVED_PARAMETERS:
                problems.append(f"'run.parameters.{key}': Jenkins reads '{key}' itself; "
                                "it cannot be a job parameter")
            elif key == UNIQUE_PARAMETER and unique is not False:
                problems.append(f"'run.parameters.{key}': the bridge sets {UNIQUE_PARAMETER} itself "
                                "(set unique: false to send your own)")
            if isinstance(value, (dict, list)):
                problems.append(f"'run.parameters.{key}' must be a single value")
        if "delay" in run and not DELAY.match(str(run["delay"])):
            problems.append(f"'run.delay' must be seconds, e.g. 0 or '0sec', not {run['delay']!r}")
        return problems
