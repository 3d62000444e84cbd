"""A rule never matches an event whose ref is neither a branch nor a tag (a hand-made event,
`cibridge explain` on a notes ref): it says so instead of matching by default."""
import textwrap

from bridge.config.load import load_config
from bridge.events import Event


def test_a_ref_neither_branch_nor_tag_matches_no_rule(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent("""\
    sources:
      github: {provider: github, secrets: ["${env:S}"]}
    targets:
      mem: {kind: memory}
    rules:
      - name: any-branch
        on: {repo: acme/api, branches: ["**"]}
        run: {target: mem}
      - name: anything
        on: {repo: acme/api}
        run: {target: mem}
    """))
    ruleset = load_config(path, environ={"S": "x"}).ruleset
    event = Event(provider="github", source="github", delivery_id="d", kind="push", repo="acme/api",
                  ref="refs/notes/commits", ref_name="commits", before="a" * 40, after="b" * 40,
                  sha="b" * 40)
    verdicts = ruleset.explain(event)
    assert [(v.rule, v.matched, v.reason) for v in verdicts] == [
        ("any-branch", False, "ref 'refs/notes/commits' is neither a branch nor a tag"),
        ("anything", False, "ref 'refs/notes/commits' is neither a branch nor a tag")]
    assert not any(v.matched for v in ruleset.match(event))
