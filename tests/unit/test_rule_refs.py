"""A rule never matches an event whose ref is neither a branch nor a tag (a hand-made event,
`cibridge explain` on a notes ref): it says so instead of matching by default."""
import textwrap

from bridge.events import Event
from helpers.rules import GITHUB_TO_MEMORY_FLOW, load_ruleset


def test_a_ref_neither_branch_nor_tag_matches_no_rule(tmp_path):
    ruleset = load_ruleset(tmp_path, GITHUB_TO_MEMORY_FLOW + textwrap.dedent("""\
    rules:
      - name: any-branch
        on: {repo: acme/api, branches: ["**"]}
        run: {target: mem}
      - name: anything
        on: {repo: acme/api}
        run: {target: mem}
    """))
    event = Event(provider="github", source="github", delivery_id="d", kind="push", repo="acme/api",
                  ref="refs/notes/commits", ref_name="commits", before="a" * 40, after="b" * 40,
                  sha="b" * 40)
    verdicts = ruleset.explain(event)
    assert [(v.rule, v.matched, v.reason) for v in verdicts] == [
        ("any-branch", False, "ref 'refs/notes/commits' is neither a branch nor a tag"),
        ("anything", False, "ref 'refs/notes/commits' is neither a branch nor a tag")]
    assert not any(v.matched for v in ruleset.match(event))
