"""`run:` templates as a rule's job request carries them: text around a field, several fields,
`$$`, lists and nested maps, constants untouched, and every render a fresh copy."""
import textwrap

import pytest

from bridge.events import Commit, Event
from bridge.templates import compile_template, render
from helpers.rules import GITHUB_TO_MEMORY_FLOW, load_ruleset

SHA = "0123456789abcdef0123456789abcdef01234567"
FIELDS = {"sha": SHA, "short_sha": SHA[:8], "tag": "v1.2", "branch": "", "repo": "acme/api",
          "ref": "refs/tags/v1.2"}

RUN = """\
  target: mem
  parameters:
    SUFFIXED: "${sha}-x"
    PREFIXED: "v-${tag}"
    TWO: "${repo}@${short_sha}"
    DOLLAR: "$${sha} costs $$5 for ${tag}"
    ONLY: "${tag}"
    PLAIN: "no template"
    NUMBER: 3
    FLAG: true
    ARGS: ["--sha", "${sha}", "lit", "${tag}-rc", 7]
    NESTED: {a: ["x", {b: "pre-${short_sha}"}], c: "const"}
    CONSTLIST: ["a", "b"]
"""

WANT = {
    "target": "mem",
    "parameters": {
        "SUFFIXED": SHA + "-x",
        "PREFIXED": "v-v1.2",
        "TWO": "acme/api@01234567",
        "DOLLAR": "${sha} costs $5 for v1.2",
        "ONLY": "v1.2",
        "PLAIN": "no template",
        "NUMBER": 3,
        "FLAG": True,
        "ARGS": ["--sha", SHA, "lit", "v1.2-rc", 7],
        "NESTED": {"a": ["x", {"b": "pre-01234567"}], "c": "const"},
        "CONSTLIST": ["a", "b"],
    },
}


def _ruleset(tmp_path):
    return load_ruleset(tmp_path, GITHUB_TO_MEMORY_FLOW + textwrap.dedent("""\
    rules:
      - name: r
        on: {repo: acme/api, tags: ["**"]}
        run:
    """) + textwrap.indent(RUN, "      "))


def _tag_event():
    return Event(provider="github", source="github", delivery_id="d-1", kind="tag", repo="acme/api",
                 ref="refs/tags/v1.2", ref_name="v1.2", before="0" * 40, after=SHA, sha=SHA,
                 created=True, deleted=False, commits=(Commit(id=SHA, message="m", modified=()),),
                 commits_complete=True, pusher="octocat", head_message="m")


def test_a_matched_rule_renders_text_around_fields_lists_and_maps(tmp_path):
    rs = _ruleset(tmp_path)
    [v] = rs.match(_tag_event())
    assert v.matched
    assert v.jobs[0].request == WANT


def test_every_render_is_a_fresh_copy(tmp_path):
    rs = _ruleset(tmp_path)
    [v] = rs.match(_tag_event())
    first = v.jobs[0].request
    first["parameters"]["CONSTLIST"].append("changed")
    first["parameters"]["ARGS"].append("changed")
    first["parameters"]["NESTED"]["a"][1]["b"] = "changed"
    [again] = rs.match(_tag_event())
    assert again.jobs[0].request == WANT


@pytest.mark.parametrize("template, want", [
    ("${sha}-x", SHA + "-x"),
    ("v-${tag}", "v-v1.2"),
    ("${tag}", "v1.2"),
    ("${tag}${tag}", "v1.2v1.2"),
    ("a${tag}b${short_sha}c", "av1.2b01234567c"),
    ("$$", "$"),
    ("$${tag}", "${tag}"),
    ("$$${tag}", "$v1.2"),
    ("no dollar", "no dollar"),
    (["${sha}-x", "v-${tag}", "plain", 1], [SHA + "-x", "v-v1.2", "plain", 1]),
    ({"k": ["${branch}", "b"], "n": None}, {"k": ["", "b"], "n": None}),
])
def test_precompiled_and_plain_render_agree(template, want):
    assert render(template, FIELDS) == want
    compiled = compile_template(template)
    got = compiled(FIELDS) if compiled is not None else template
    assert got == want


def test_a_constant_needs_no_renderer():
    assert compile_template("plain") is None
    assert compile_template(["a", {"b": 1}]) is None
    assert compile_template({"a": ["x"], "b": 2}) is None
