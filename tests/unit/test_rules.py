"""Rule matching, table-driven: GitHub Actions `on: push` semantics and the reasons of every "no"
(in words, and as the clause that stopped the rule)."""
import textwrap

import pytest

from bridge.events import ZERO_SHA, Commit, Event
from bridge.rules import RuleSet, StoppedBy, decide_paths, path_filter_allows, skip_marker
from bridge.templates import render
from helpers.rules import load_ruleset

SHA_A = "a" * 40
SHA_B = "b" * 40


def event(ref="refs/heads/main", repo="acme/api", files=("src/app.py",), message="fix", kind=None,
          complete=True, before=SHA_A, after=SHA_B, source="github", created=False):
    deleted = after == ZERO_SHA
    kind = kind or ("delete" if deleted else "tag" if ref.startswith("refs/tags/") else "push")
    name = ref.split("/", 2)[2]
    commits = () if deleted else (Commit(id=after, message=message, modified=tuple(files)),)
    return Event(provider="github", source=source, delivery_id="d-1", kind=kind, repo=repo, ref=ref,
                 ref_name=name, before=before, after=after, sha=None if deleted else after, created=created,
                 deleted=deleted, commits=commits, commits_complete=complete, pusher="octocat",
                 head_message=message)


def ruleset(tmp_path, on: str, extra: str = "") -> RuleSet:
    text = textwrap.dedent("""\
    sources:
      github: {provider: github, secrets: ["${env:S}"]}
      other: {provider: github, secrets: ["${env:S}"]}
    targets:
      mem: {kind: memory}
    rules:
      - name: r
        on: %s
        run: {target: mem, parameters: {SHA: "${sha}", B: "${branch}", T: "${tag}"}}
    """) % on + ("    allow_empty_sha: true\n" if "delete" in on else "") + textwrap.indent(textwrap.dedent(extra), "  ")
    return load_ruleset(tmp_path, text)


CASES = [
    # (on, event kwargs, matched, reason)
    ("{repo: acme/api}", {}, True, "matched"),
    ("{repo: acme/web}", {}, False, "repo 'acme/api' is not in [acme/web]"),
    ("{repo: 'acme/*'}", {"repo": "acme/api"}, True, "matched"),
    ("{repo: 'acme/*'}", {"repo": "acme/sub/api"}, False, "repo 'acme/sub/api' is not in [acme/*]"),
    ("{repo: 'acme/**'}", {"repo": "acme/sub/api"}, True, "matched"),
    ("{repo: acme/api, branches: [main]}", {"ref": "refs/heads/dev"}, False,
     "branch 'dev' is not in branches [main]"),
    ("{repo: acme/api, branches: [main, 'release/**']}", {"ref": "refs/heads/release/1.0/rc"}, True, "matched"),
    ("{repo: acme/api, branches: ['release/*']}", {"ref": "refs/heads/release/1.0/rc"}, False,
     "branch 'release/1.0/rc' is not in branches [release/*]"),
    ("{repo: acme/api, branches: ['**', '!dev']}", {"ref": "refs/heads/dev"}, False,
     "branch 'dev' is not in branches [**, !dev]"),
    ("{repo: acme/api, branches-ignore: ['dependabot/**']}", {"ref": "refs/heads/dependabot/npm/x"}, False,
     "branch 'dependabot/npm/x' is in branches-ignore [dependabot/**] ('dependabot/**')"),
    # only branches given: tag pushes do not run, and vice versa
    ("{repo: acme/api, branches: [main]}", {"ref": "refs/tags/v1.0"}, False,
     "tag 'v1.0': the rule filters branches only, so tag pushes do not run"),
    ("{repo: acme/api, tags: ['v*']}", {"ref": "refs/heads/main"}, False,
     "branch 'main': the rule filters tags only, so branch pushes do not run"),
    ("{repo: acme/api, tags: ['v*']}", {"ref": "refs/tags/v1.0"}, True, "matched"),
    ("{repo: acme/api, tags: ['v[0-9]+.*']}", {"ref": "refs/tags/version"}, False,
     "tag 'version' is not in tags [v[0-9]+.*]"),
    ("{repo: acme/api, tags-ignore: ['*-rc*']}", {"ref": "refs/tags/v2-rc1"}, False,
     "tag 'v2-rc1' is in tags-ignore [*-rc*] ('*-rc*')"),
    # a tag that looks like a branch name: decided by the ref prefix, never the name
    ("{repo: acme/api, branches: ['feature/*']}", {"ref": "refs/tags/feature/x"}, False,
     "tag 'feature/x': the rule filters branches only, so tag pushes do not run"),
    # no ref filter at all: branches and tags both run
    ("{repo: acme/api}", {"ref": "refs/tags/v1"}, True, "matched"),
    # paths: both filters must pass; not applied to tags
    ("{repo: acme/api, branches: [main], paths: ['src/**']}", {"files": ("docs/x.md",)}, False,
     "no changed file matches paths [src/**] (1 file changed)"),
    ("{repo: acme/api, branches: [main], paths: ['src/**']}", {"files": ("docs/x.md", "src/a/b.py")}, True,
     "file 'src/a/b.py' matches paths [src/**]"),
    ("{repo: acme/api, paths-ignore: ['docs/**']}", {"files": ("docs/x.md",)}, False,
     "every changed file is in paths-ignore [docs/**] (1 file changed)"),
    ("{repo: acme/api, paths-ignore: ['docs/**']}", {"files": ("docs/x.md", "README.md")}, True,
     "file 'README.md' is not in paths-ignore [docs/**]"),
    ("{repo: acme/api, paths: ['*.md', '!README.md']}", {"files": ("README.md",)}, False,
     "no changed file matches paths [*.md, !README.md] (1 file changed)"),
    ("{repo: acme/api, paths: ['src/**']}", {"ref": "refs/tags/v1", "files": ("docs/x",)}, True, "matched"),
    # skip markers on the head commit
    ("{repo: acme/api}", {"message": "wip [skip ci]"}, False, "head commit message contains '[skip ci]'"),
    ("{repo: acme/api}", {"message": "wip [CI SKIP]"}, False, "head commit message contains '[ci skip]'"),
    ("{repo: acme/api}", {"message": "x [no ci]"}, False, "head commit message contains '[no ci]'"),
    ("{repo: acme/api}", {"message": "x [skip actions]"}, False, "head commit message contains '[skip actions]'"),
    ("{repo: acme/api}", {"message": "x [actions skip]"}, False, "head commit message contains '[actions skip]'"),
    ("{repo: acme/api}", {"message": "fix\n\nskip-checks: true\n"}, False,
     "head commit message contains 'skip-checks: true'"),
    ("{repo: acme/api}", {"message": "explain skip-checks: true inline"}, True, "matched"),
    # deletions build only when asked
    ("{repo: acme/api}", {"after": ZERO_SHA}, False,
     "'refs/heads/main' was deleted; deletions build only with events: [delete]"),
    ("{repo: acme/api, events: [delete]}", {"after": ZERO_SHA}, True, "matched"),
    ("{repo: acme/api, events: [delete]}", {}, False, "event 'push' is not in events [delete]"),
    ("{repo: acme/api, events: [push]}", {"ref": "refs/tags/v1"}, False, "event 'tag' is not in events [push]"),
    # sources
    ("{source: other}", {}, False, "source 'github' is not in [other]"),
    ("{source: github}", {}, True, "matched"),
]


@pytest.mark.parametrize("on, kwargs, matched, reason", CASES)
def test_rule_table(tmp_path, on, kwargs, matched, reason):
    verdicts = ruleset(tmp_path, on).explain(event(**kwargs))
    assert [(v.matched, v.reason) for v in verdicts] == [(matched, reason)]
    assert bool(verdicts[0]) is matched


@pytest.mark.parametrize("on, kwargs, matched, reason", CASES)
def test_every_no_names_its_clause_and_a_yes_none(tmp_path, on, kwargs, matched, reason):
    [v] = ruleset(tmp_path, on).explain(event(**kwargs))
    assert (v.stopped_by is None) is matched
    if not matched:   # stored and read back as it was
        assert StoppedBy.from_dict(v.to_dict()["stopped_by"]) == v.stopped_by


STOPS = [
    # (on, event kwargs, (clause, value, patterns))
    ("{repo: acme/web}", {}, ("repo", "acme/api", ("acme/web",))),
    ("{source: other}", {}, ("source", "github", ("other",))),
    ("{repo: acme/api, events: [delete]}", {}, ("events", "push", ("delete",))),
    ("{repo: acme/api}", {"after": ZERO_SHA}, ("events", "delete", ("push", "tag"))),
    ("{repo: acme/api}", {"ref": "refs/notes/x"}, ("ref", "refs/notes/x", ())),
    ("{branches: [main, 'release/*']}", {"ref": "refs/heads/dev"}, ("branches", "dev", ("main", "release/*"))),
    ("{branches-ignore: ['dependabot/**', 'x']}", {"ref": "refs/heads/dependabot/a"},
     ("branches-ignore", "dependabot/a", ("dependabot/**",))),
    ("{branches: [main]}", {"ref": "refs/tags/v1.0"}, ("branches", "refs/tags/v1.0", ())),
    ("{tags: ['v*']}", {"ref": "refs/heads/main"}, ("tags", "refs/heads/main", ())),
    ("{tags: ['v*']}", {"ref": "refs/tags/x"}, ("tags", "x", ("v*",))),
    ("{tags-ignore: ['*-rc*']}", {"ref": "refs/tags/v2-rc1"}, ("tags-ignore", "v2-rc1", ("*-rc*",))),
    ("{paths: ['src/**']}", {"files": ("a.md", "b.md")}, ("paths", "2 files changed", ("src/**",))),
    ("{paths-ignore: ['docs/**']}", {"files": ("docs/x.md",)}, ("paths-ignore", "1 file changed", ("docs/**",))),
    ("{repo: acme/api}", {"message": "wip [CI SKIP]"}, ("skip", "[ci skip]", ())),
    ("{paths: ['src/**']}", {"message": "x\n\nskip-checks: true", "files": ("a.md",)},
     ("skip", "skip-checks: true", ())),
]


@pytest.mark.parametrize("on, kwargs, stop", STOPS)
def test_stopped_by_names_the_clause_and_what_it_saw(tmp_path, on, kwargs, stop):
    [v] = ruleset(tmp_path, on).explain(event(**kwargs))
    assert v.stopped_by == StoppedBy(*stop)
    # A verdict stored before verdicts kept stopped_by: the clauses a skipped-status reports
    # are read back from the reason's words.
    assert StoppedBy.from_reason(v.reason) == (
        StoppedBy(stop[0], stop[1] if stop[0] == "skip" else "") if stop[0] in ("skip", "paths", "paths-ignore")
        else None)


def test_incomplete_commit_list_needs_files_never_a_guess(tmp_path):
    rs = ruleset(tmp_path, "{repo: acme/api, paths: ['src/**']}")
    [v] = rs.match(event(files=("docs/only.md",), complete=False))
    assert v.matched and v.needs_files
    [job] = v.jobs
    assert job.needs_files
    assert job.path_filter == {"paths": ["src/**"], "paths_ignore": [], "on_unknown_files": "run"}


def test_new_branch_without_commits_needs_files(tmp_path):
    rs = ruleset(tmp_path, "{repo: acme/api, paths: ['src/**']}")
    e = event(before=ZERO_SHA, created=True)
    e = Event(**{**e.__dict__, "commits": ()})
    [v] = rs.match(e)
    assert v.needs_files


def test_templates_render_named_fields_only(tmp_path):
    [v] = ruleset(tmp_path, "{repo: acme/api}").match(event())
    assert v.jobs[0].request == {"target": "mem", "parameters": {"SHA": SHA_B, "B": "main", "T": ""}}
    assert render("$${sha} and ${sha}", {"sha": "1"}) == "${sha} and 1"
    assert render({"a": ["${repo}"]}, {"repo": "x/y"}) == {"a": ["x/y"]}


def test_every_matching_rule_fires_and_index_keeps_file_order(tmp_path):
    extra = """\
      - name: r2
        on: {repo: "acme/*"}
        run: {target: mem}
      - name: r3
        on: {repo: acme/api}
        run: {target: mem}
      - name: r4
        on: {repo: other/repo}
        run: {target: mem}
    """
    rs = ruleset(tmp_path, "{repo: acme/api}", extra)
    assert [v.rule for v in rs.match(event()) if v] == ["r", "r2", "r3"]
    assert [v.rule for v in rs.explain(event())] == ["r", "r2", "r3", "r4"]


def test_path_filter_reevaluation_and_policy():
    class Res:
        def __init__(self, files, source="mirror", reason="diff a..b"):
            self.files, self.source, self.reason = files, source, reason

    pf = {"paths": ["src/**"], "paths_ignore": [], "on_unknown_files": "run"}
    assert path_filter_allows(pf, ["src/x.py"]) == (True, "file 'src/x.py' matches paths [src/**]")
    assert decide_paths(pf, Res(frozenset({"doc.md"}))) == (
        False, "no changed file matches paths [src/**] (1 file changed) (files from mirror)")
    assert decide_paths(pf, Res(None, "unknown", "fetch failed")) == (
        True, "changed files unknown (fetch failed); on_unknown_files: run, running")
    assert decide_paths({**pf, "on_unknown_files": "skip"}, Res(None, "unknown", "fetch failed")) == (
        False, "changed files unknown (fetch failed); on_unknown_files: skip, skipping")


@pytest.mark.parametrize("message, marker", [("[skip ci] x", "[skip ci]"), ("ok", None),
                                             ("Skip-Checks: TRUE", "skip-checks: true")])
def test_skip_marker(message, marker):
    assert skip_marker(message) == marker
