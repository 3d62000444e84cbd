"""Tests for bridge.globs: GitHub's filter-pattern cheat sheet, row by row, plus negation order,
escapes, invalid patterns (exact messages), names with '/' and unicode names."""
import random
import re

import pytest

from bridge.globs import GlobError, Pattern, PatternList, compile_pattern, validate_patterns

# "Patterns to match branches and tags" (docs: Workflow syntax for GitHub Actions, Filter
# pattern cheat sheet). Matches are GitHub's own examples; non-matches follow from the rules.
BRANCHES_AND_TAGS = [
    (["feature/*"], ["feature/my-branch", "feature/your-branch"],
     ["feature/beta-a/my-branch", "feature", "main"]),
    (["feature/**"], ["feature/beta-a/my-branch", "feature/your-branch", "feature/mona/the/octocat"],
     ["feature", "features/x", "main"]),
    (["main", "releases/mona-the-octocat"], ["main", "releases/mona-the-octocat"],
     ["mainline", "Main", "releases/mona", "releases/mona-the-octocat/x", "xmain"]),
    (["*"], ["main", "releases"], ["releases/v1", "feature/x"]),
    (["**"], ["all/the/branches", "every/tag", "main"], []),
    (["*feature"], ["mona-feature", "feature", "ver-10-feature"], ["features", "feature-x", "a/feature"]),
    (["v2*"], ["v2", "v2.0", "v2.9"], ["v1.0", "v3", "V2", "xv2", "v2/hotfix"]),
    (["v[12].[0-9]+.[0-9]+"], ["v1.10.1", "v2.0.0"],
     ["v3.0.0", "v1.0", "v1.a.0", "v1.0.0-rc1", "v12.0.0", "v1x0.0"]),
]

# "Patterns to match file paths".
PATHS = [
    (["*"], ["README.md", "server.rb"], ["docs/README.md"]),
    (["*.jsx?"], ["page.js", "page.jsx"], ["page.jsxx", "page.j", "page.ts", "src/page.js"]),
    (["**"], ["all/the/files.md", "README.md"], []),
    (["*.js"], ["app.js", "index.js"], ["js/index.js", "app.jsx"]),
    (["**.js"], ["index.js", "js/index.js", "src/js/app.js"], ["index.jsx", "js/index.ts"]),
    (["docs/*"], ["docs/README.md", "docs/file.txt"], ["docs/mona/octocat.txt", "docs", "src/docs/a.md"]),
    (["docs/**"], ["docs/README.md", "docs/mona/octocat.txt"], ["docs", "docs2/a.md", "src/docs/a.md"]),
    (["docs/**/*.md"], ["docs/README.md", "docs/mona/hello-world.md", "docs/a/markdown/file.md"],
     ["docs/README.txt", "README.md", "src/docs/a.md"]),
    (["**/docs/**"], ["docs/hello.md", "dir/docs/my-file.txt", "space/docs/plan/space.doc"],
     ["docs", "dir/docs", "mydocs/a.md"]),
    (["**/README.md"], ["README.md", "js/README.md"], ["xREADME.md", "js/NOT-README.md", "README.markdown"]),
    (["**/*src/**"], ["a/src/app.js", "my-src/code/js/app.js"], ["a/src", "a/source/app.js"]),
    (["**/*-post.md"], ["my-post.md", "path/their-post.md"], ["post.md", "path/their-post.txt"]),
    (["**/migrate-*.sql"], ["migrate-10909.sql", "db/migrate-v1.0.sql", "db/sept/migrate-v1.sql"],
     ["db/migrate.sql", "db/migrate-v1/x.sql", "db/premigrate-1.sql"]),
    (["*.md", "!README.md"], ["hello.md"], ["README.md", "docs/hello.md"]),
    (["*.md", "!README.md", "README*"], ["hello.md", "README.md", "README.doc"],
     ["docs/hello.md", "notes.txt"]),
]

# The cheat sheet's character list and its examples.
CHARACTERS = [
    (["Octo*"], ["Octocat", "Octo"], ["Octo/cat", "octocat"]),
    # `?` repeats the preceding character (zero or one); it is not "any one character".
    (["Octoc?t"], ["Octot", "Octoct"], ["Octocat", "Octocct"]),
    (["v1+"], ["v1", "v11", "v111"], ["v", "v12"]),
    (["[CB]at"], ["Cat", "Bat"], ["Hat", "cat", "CBat", "at"]),
    (["[1-2]00"], ["100", "200"], ["300", "00"]),
    (["[0-9a-z]"], ["7", "q"], ["Q", "-", "é", "7q"]),
    (["a**b"], ["ab", "a/x/b", "axb"], ["a/x/c"]),
    (["a!b"], ["a!b"], ["ab"]),  # `!` is special only at the start
    (["v1.0"], ["v1.0"], ["v1x0"]),  # `.` is a plain character
    (["a(b)$^{2}|c"], ["a(b)$^{2}|c"], ["ab", "c"]),
]


def _cases(table):
    for patterns, yes, no in table:
        for value in yes:
            yield pytest.param(patterns, value, True, id=f"{'|'.join(patterns)}~{value}")
        for value in no:
            yield pytest.param(patterns, value, False, id=f"{'|'.join(patterns)}!~{value}")


@pytest.mark.parametrize("patterns,value,expected", [
    *_cases(BRANCHES_AND_TAGS), *_cases(PATHS), *_cases(CHARACTERS)])
def test_cheat_sheet(patterns, value, expected):
    assert PatternList(patterns).matches(value) is expected


ORDERED = [
    (["**", "!release/**"], {"main": True, "release/v1": False, "release/v1/hotfix": False}),
    (["release/**", "!release/**-alpha"], {"release/v1": True, "release/v1-alpha": False, "main": False}),
    (["**", "!docs/**", "docs/api/**"], {"src/a.py": True, "docs/guide.md": False, "docs/api/x.md": True}),
    (["!main", "**"], {"main": True, "dev": True}),  # the later positive pattern decides
    (["*.md", "!README*", "README.md", "!**"], {"hello.md": False, "README.md": False}),
]


@pytest.mark.parametrize("patterns,expected", ORDERED)
def test_ordered_negation(patterns, expected):
    plist = PatternList(patterns)
    assert {value: plist.matches(value) for value in expected} == expected


@pytest.mark.parametrize("patterns,value,deciding", [
    (["*.md", "!README.md"], "hello.md", "*.md"),
    (["*.md", "!README.md"], "README.md", "!README.md"),
    (["*.md", "!README.md", "README*"], "README.md", "README*"),
    (["*.md", "!README.md", "README*"], "notes.txt", None),
    (["main", "release/**"], "release/v1", "release/**"),
    (["main", "release/**"], "dev", None),
])
def test_first_match_names_the_deciding_pattern(patterns, value, deciding):
    assert PatternList(patterns).first_match(value) == deciding


@pytest.mark.parametrize("patterns", [
    ["main", "v[0-9]+", "feature/**", "*.txt", "docs/**/*.md", "release/v1"],
    ["**/README.md", "src/**", "pom.xml"],
    ["main"],
])
@pytest.mark.parametrize("value", [
    "main", "v10", "v", "feature/a/b", "a.txt", "dir/a.txt", "docs/x/y.md", "release/v1",
    "README.md", "a/b/README.md", "src/x.py", "pom.xml", "pom.xmlx", "",
])
def test_fast_path_agrees_with_ordered_evaluation(patterns, value):
    expected = any(compile_pattern(p).match(value) for p in patterns)
    plist = PatternList(patterns)
    assert plist.matches(value) is expected
    assert (plist.first_match(value) is not None) is expected


def test_any_match_for_changed_files():
    paths = PatternList(["src/**", "!src/**/*.md"])
    assert not paths.any_match(["src/README.md", "docs/a.md"])
    assert paths.any_match(["src/README.md", "docs/a.md", "src/app/main.py"])
    assert not paths.any_match([])
    assert paths.any_match(f for f in ["src/x.c"])  # any iterable, even a generator


def test_pattern_and_list_attributes():
    neg = compile_pattern("!docs/**")
    assert isinstance(neg, Pattern)
    assert (neg.source, neg.negated) == ("!docs/**", True)
    assert neg.match("docs/a.md")  # a Pattern matches its body; the list applies the `!`
    lit = compile_pattern("release/v1")
    assert (lit.source, lit.negated, lit.match("release/v1"), lit.match("release/v2")) == (
        "release/v1", False, True, False)
    plist = PatternList(["main", "!main/x", "release/**"])
    assert plist.sources == ("main", "!main/x", "release/**")
    assert not PatternList([]).matches("main")


@pytest.mark.parametrize("pattern,value,expected", [
    ("\\!file", "!file", True),
    ("\\!file", "file", False),
    ("escape\\\\backslash", "escape\\backslash", True),
    ("v1\\+", "v1+", True),
    ("v1\\+", "v11", False),
    ("\\*", "*", True),
    ("\\*", "a", False),
    ("\\*\\*", "**", True),
    ("\\*\\*", "a/b", False),
    ("feat\\[1\\]", "feat[1]", True),
    ("feat\\[1\\]", "feat1", False),
    ("a\\?", "a?", True),
    ("a\\?", "a", False),
    ("a\\??", "a", True),  # an escaped character can still be repeated
    ("release/v1\\.0", "release/v1.0", True),
])
def test_escapes(pattern, value, expected):
    p = compile_pattern(pattern)
    assert not p.negated
    assert p.match(value) is expected


@pytest.mark.parametrize("patterns,value,expected", [
    (["release/*"], "release/v1", True),
    (["release/**"], "release/v1", True),
    (["release/v[0-9]"], "release/v1", True),
    (["release/v1"], "release/v1", True),
    (["*"], "release/v1", False),
    (["**"], "release/v1", True),
    (["release"], "release/v1", False),
    (["feature/*"], "feature/ünïcode-分支", True),
    (["*"], "日本語", True),
    (["release/**"], "release/v1/straße", True),
    (["main"], "maın", False),  # dotless i: no folding, no normalization
    (["[a-z]x"], "éx", False),
    (["ünï*"], "ünïcode", True),
    (["!ünïcode", "**"], "ünïcode", True),
])
def test_names_with_slash_and_unicode(patterns, value, expected):
    assert PatternList(patterns).matches(value) is expected


INVALID = [
    ("feat[", "bad pattern 'feat[': unclosed '['"),
    ("feat[a-z", "bad pattern 'feat[a-z': unclosed '['"),
    ("a[]", "bad pattern 'a[]': empty '[]'"),
    ("?a", "bad pattern '?a': '?' has no character before it to repeat"),
    ("+a", "bad pattern '+a': '+' has no character before it to repeat"),
    ("!+a", "bad pattern '!+a': '+' has no character before it to repeat"),
    ("a*+", "bad pattern 'a*+': '+' has no character before it to repeat"),
    ("a??", "bad pattern 'a??': '?' has no character before it to repeat"),
    ("a\\", r"bad pattern 'a\\': trailing '\' escapes nothing"),
    ("", "bad pattern '': empty pattern"),
    ("!", "bad pattern '!': empty pattern after '!'"),
    (5, "bad pattern 5: not a string (int)"),
    (None, "bad pattern None: not a string (NoneType)"),
    ("[a-Z]", "bad pattern '[a-Z]': bad range 'a-Z' (ranges are a-z, A-Z or 0-9)"),
    ("[9-0]", "bad pattern '[9-0]': bad range '9-0' (ranges are a-z, A-Z or 0-9)"),
    ("v[._]", "bad pattern 'v[._]': '[...]' holds only letters, digits and ranges, not '.'"),
    ("[a-]", "bad pattern '[a-]': '[...]' holds only letters, digits and ranges, not '-'"),
    ("[é]", "bad pattern '[é]': '[...]' holds only letters, digits and ranges, not 'é'"),
]


@pytest.mark.parametrize("pattern,message", INVALID)
def test_invalid_pattern(pattern, message):
    with pytest.raises(GlobError) as info:
        compile_pattern(pattern)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
    assert validate_patterns(["main", pattern]) == [message]
    with pytest.raises(GlobError, match=f"^{re.escape(message)}$"):
        PatternList(["main", pattern])


ONLY_NEGATIVE = ("patterns ['!main', '!dev'] are all negative: a '!' pattern only excludes what an "
                 "earlier pattern included; add a positive pattern (e.g. '**') or use the -ignore key")


def test_only_negative_patterns_are_rejected():
    assert validate_patterns(["!main", "!dev"]) == [ONLY_NEGATIVE]
    with pytest.raises(GlobError) as info:
        PatternList(["!main", "!dev"])
    assert str(info.value) == ONLY_NEGATIVE


def test_validate_reports_every_problem():
    assert validate_patterns(["main", "feat[", "", 5, "release/**"]) == [
        "bad pattern 'feat[': unclosed '['",
        "bad pattern '': empty pattern",
        "bad pattern 5: not a string (int)",
    ]
    assert validate_patterns(["!a", "!b["]) == [
        "bad pattern '!b[': unclosed '['",
        "patterns ['!a', '!b['] are all negative: a '!' pattern only excludes what an earlier "
        "pattern included; add a positive pattern (e.g. '**') or use the -ignore key",
    ]
    assert validate_patterns(["main", "!main/x", "release/**"]) == []
    assert validate_patterns([]) == []


@pytest.mark.parametrize("patterns,message", [
    ("main", "expected a list of patterns, got 'main'"),
    (None, "expected a list of patterns, got None"),
    ({"main": 1}, "expected a list of patterns, got {'main': 1}"),
])
def test_a_list_is_required(patterns, message):
    assert validate_patterns(patterns) == [message]
    with pytest.raises(GlobError):
        PatternList(patterns)


@pytest.mark.parametrize("seed", range(30))
def test_combined_lookups_agree_with_last_match_wins(seed):
    """PatternList's fast paths (no `!`, or every `!` after every positive pattern) against
    GitHub's rule, walked by hand: the last pattern that matches decides."""
    rng = random.Random(seed)
    pool = ["main", "**", "feature/*", "feature/**", "release/v1", "v[0-9]+", "*.md", "docs/**",
            "dependabot/**", "a", "a/b", "**/x"]
    positives = rng.sample(pool, rng.randint(1, 4))
    negatives = ["!" + p for p in rng.sample(pool, rng.randint(0, 3))]
    patterns = positives + negatives if seed % 3 else rng.sample(positives + negatives,
                                                                 len(positives) + len(negatives))
    if patterns[0].startswith("!"):
        patterns.insert(0, positives[0])
    plist = PatternList(patterns)
    alphabet = ["main", "feature", "release", "v1", "v", "docs", "dependabot", "a", "b", "x",
                "README.md", "1"]
    for _ in range(300):
        value = "/".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
        decided = None
        for p in patterns:
            negated = p.startswith("!")
            if compile_pattern(p[1:] if negated else p).match(value):
                decided = not negated
        assert plist.matches(value) is bool(decided), (patterns, value)
