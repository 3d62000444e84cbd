"""`cibridge` in-process for the command-line tests: one command through click's runner, and
`explain` on a shared payload with the headers the host sent it with.

Input: the command's arguments (any value, made str). Output: (exit code, output)."""
from __future__ import annotations

import json

from click.testing import CliRunner

from bridge.cli.main import cli
from helpers.payloads import load_payload, payloads_dir


def run(*args) -> tuple[int, str]:
    """`cibridge ARGS...`; an exception the command does not handle fails the test."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def explain_shared(rules, rel: str, tmp_path, fmt: str = "json") -> tuple[int, str]:
    """`cibridge explain --format FMT` on shared payload `rel` (its source named by its folder),
    its recorded headers given as a --headers file."""
    _, headers = load_payload(rel)
    hfile = tmp_path / "headers.json"
    hfile.write_text(json.dumps(headers))
    return run("explain", "--rules", rules, "--source", rel.split("/")[0], "--headers", hfile,
               "--format", fmt, payloads_dir() / rel)
