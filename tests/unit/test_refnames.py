"""Ref names: bridge.refnames against git's own `git check-ref-format`, example by example and
on generated names (a real git subprocess in the test; none in the bridge)."""
from __future__ import annotations

import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.refnames import branch_or_tag_problem, check_ref_format

REFUSED = {
    "refs/heads/a b": "it contains space",
    "refs/heads/a\tb": "it contains control character U+0009",
    "refs/heads/a\nb": "it contains control character U+000A",
    "refs/heads/a\x00b": "it contains control character U+0000",
    "refs/heads/a\x7fb": "it contains DEL",
    "refs/heads/a~1": "it contains '~'",
    "refs/heads/a^": "it contains '^'",
    "refs/heads/a:b": "it contains ':'",
    "refs/heads/a?": "it contains '?'",
    "refs/heads/a*": "it contains '*'",
    "refs/heads/a[b": "it contains '['",
    "refs/heads/a\\b": "it contains '\\'",
    "refs/heads/a..b": "it contains '..'",
    "refs/heads/a@{1}": "it contains '@{'",
    "refs/heads/.hidden": "its component '.hidden' starts with '.'",
    "refs/heads/x/.y": "its component '.y' starts with '.'",
    "refs/heads/main.lock": "its component 'main.lock' ends with '.lock'",
    "refs/heads/x.lock/y": "its component 'x.lock' ends with '.lock'",
    "refs/heads/x/": "it ends with '/'",
    "/refs/heads/x": "it starts with '/'",
    "refs/heads//x": "it contains '//'",
    "refs/heads/x.": "it ends with '.'",
    "@": "it is '@'",
    "": "it is empty",
    "main": "it has a single component",
}

ACCEPTED = ["refs/heads/main", "refs/heads/release/1.x", "refs/tags/v1.0.0", "refs/heads/$(id>pwned)",
            "refs/heads/`id`;rm${IFS}-rf|y&z", "refs/heads/\"'quotes'\"", "refs/heads/@", "refs/heads/a@b",
            "refs/heads/ünïcødé", "refs/heads/x{y}", "refs/heads/a.b", "refs/heads/feature/-x",
            "refs/heads/a.lockx", "refs/heads/--", "refs/heads/-"]


def git_accepts(ref: str) -> bool:
    assert not ref.startswith("-")      # git would read it as an option
    result = subprocess.run(["git", "check-ref-format", ref], capture_output=True)
    return result.returncode == 0


@pytest.mark.parametrize("ref, reason", sorted(REFUSED.items()))
def test_names_git_refuses_are_refused_with_the_rule(ref, reason):
    assert check_ref_format(ref) == reason
    if "\x00" not in ref and ref:
        assert not git_accepts(ref)


@pytest.mark.parametrize("ref", ACCEPTED)
def test_names_git_accepts_pass(ref):
    assert git_accepts(ref)
    assert check_ref_format(ref) is None


@pytest.mark.parametrize("ref, reason", [
    ("refs/heads/--upload-pack=touch${IFS}pwned", "the branch name starts with '-'"),
    ("refs/heads/-x", "the branch name starts with '-'"),
    ("refs/tags/-v1", "the tag name starts with '-'"),
    ("refs/heads/HEAD", "the branch is named 'HEAD'"),
    ("refs/heads/--upload-pack=touch /tmp/x", "it contains space"),
])
def test_branch_and_tag_names_may_not_read_as_options(ref, reason):
    assert branch_or_tag_problem(ref) == reason
    short = ref.split("/", 2)[2]
    kind = "--branch" if ref.startswith("refs/heads/") else None
    if kind:     # git's own `--branch` check refuses it too
        assert subprocess.run(["git", "check-ref-format", kind, short],
                              capture_output=True).returncode != 0


_ALPHABET = "ab./-@{}~^:?*[\\ \t\x7f.lockü$()"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=_ALPHABET, max_size=14).map(lambda s: "refs/heads/" + s)
       | st.text(alphabet=_ALPHABET, max_size=14).filter(lambda s: not s.startswith("-")))
def test_agrees_with_git_check_ref_format(ref):
    assert (check_ref_format(ref) is None) == git_accepts(ref), ref
