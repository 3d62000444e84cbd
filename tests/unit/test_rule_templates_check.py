"""The template checks config validation relies on (bridge/rules.py): the line of every template
in a loaded `run:` (lists included), `${sha}` uses for deletions, the problems of unknown fields,
unclosed `${` and secret references, the templates of a literal argv, and a verdict as stored."""
from bridge.rules import StoppedBy, Verdict
from bridge.templates import commit_templates, template_problems, templates_in
from bridge.config.yamlload import load

RUN = """\
target: ci
parameters:
  SHA: "${sha}"
  TAG: "${tag}"
args:
  - "--short"
  - "${short_sha}-x"
env: {PLAIN: "$${sha}"}
"""


def test_commit_templates_name_their_lines_in_maps_and_lists():
    run = load(RUN)
    assert commit_templates(run) == [(3, "sha"), (7, "short_sha")]
    assert commit_templates({"parameters": {"A": "${sha}", "B": ["${short_sha}"], "C": "${tag}"}}) == \
        [(0, "sha"), (0, "short_sha")]
    assert commit_templates({"a": "${tag}"}) == []


def test_template_problems_each_with_its_line():
    run = load("""\
target: ci
parameters:
  A: "${shaa}"
  B: "${env:TOKEN}"
list:
  - ok
  - "${""" + "x" * 60 + """"
""")
    problems = template_problems(run)
    assert [line for line, _ in problems] == [3, 4, 7]
    assert problems[0][1].startswith("template '${shaa}' names an unknown field (did you mean '${sha}'?)")
    assert problems[1][1].startswith("secret references like '${env:TOKEN}' are not allowed in 'run:'")
    assert problems[2][1] == f"template {'${' + 'x' * 38!r} has no closing '}}' (write $${{ for a literal '${{')"


def test_known_fields_and_dollars_are_no_problem():
    assert template_problems({"a": "${sha} $$ $${x} ${repo}", "b": ["${tag}"]}) == []


def test_templates_in_a_literal_argv():
    unclosed = "--x=${" + "y" * 60
    assert templates_in(["make", "${sha}", "$$HOME", 3, unclosed, "a${tag}b${ref}"]) == [
        (1, "${sha}"), (4, unclosed[4:4 + 40]), (5, "${tag}"), (5, "${ref}")]
    assert templates_in("cd ${repo}") == [(None, "${repo}")]
    assert templates_in("$$ only") == []


def test_a_verdict_as_stored():
    assert Verdict("r", True, "matched", needs_files=True).to_dict() == {
        "rule": "r", "matched": True, "reason": "matched", "needs_files": True, "stopped_by": None}
    no = Verdict("s", False, "no", stopped_by=StoppedBy("branches", "dev", ("main",)))
    assert no.to_dict() == {"rule": "s", "matched": False, "reason": "no", "needs_files": False,
                            "stopped_by": {"clause": "branches", "value": "dev", "patterns": ["main"]}}
