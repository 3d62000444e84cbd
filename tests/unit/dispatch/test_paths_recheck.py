"""The dispatcher's path re-check (`path_filter_allows` / `decide_paths`) on a resolved file list:
`paths` and `paths-ignore` each way, with the reason the job's history shows."""
import pytest

from bridge.rules import decide_paths, path_filter_allows


class Resolution:
    """What changes.resolve_files returns: the files (or None) and where they came from."""

    def __init__(self, files, source="mirror", reason=""):
        self.files, self.source, self.reason = files, source, reason


IGNORE = {"paths": [], "paths_ignore": ["docs/**", "*.md"], "on_unknown_files": "run"}
PATHS = {"paths": ["src/**"], "paths_ignore": [], "on_unknown_files": "skip"}


@pytest.mark.parametrize("files, allowed, reason", [
    (["docs/a.md", "README.md"], False, "every changed file is in paths-ignore [docs/**, *.md] (2 files changed)"),
    (["docs/a.md"], False, "every changed file is in paths-ignore [docs/**, *.md] (1 file changed)"),
    (["docs/a.md", "src/x.py"], True, "file 'src/x.py' is not in paths-ignore [docs/**, *.md]"),
    (["src/x.py", "docs/a.md"], True, "file 'src/x.py' is not in paths-ignore [docs/**, *.md]"),
])
def test_paths_ignore(files, allowed, reason):
    assert path_filter_allows(IGNORE, files) == (allowed, reason)
    assert decide_paths(IGNORE, Resolution(frozenset(files))) == (allowed, f"{reason} (files from mirror)")


@pytest.mark.parametrize("files, allowed, reason", [
    (["docs/a.md"], False, "no changed file matches paths [src/**] (1 file changed)"),
    (["docs/a.md", "src/deep/x.py"], True, "file 'src/deep/x.py' matches paths [src/**]"),
])
def test_paths(files, allowed, reason):
    assert path_filter_allows(PATHS, iter(files)) == (allowed, reason)


def test_no_filter_allows():
    assert path_filter_allows({"paths": [], "paths_ignore": []}, ["x"]) == (True, "no path filter")


def test_unknown_files_follow_the_policy():
    assert decide_paths(IGNORE, Resolution(None, "unknown", "no mirror")) == (
        True, "changed files unknown (no mirror); on_unknown_files: run, running")
    assert decide_paths(PATHS, Resolution(None, "unknown", "no mirror")) == (
        False, "changed files unknown (no mirror); on_unknown_files: skip, skipping")
