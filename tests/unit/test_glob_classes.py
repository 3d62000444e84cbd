"""Character classes in glob patterns: a one-character range (`[a-a]`) is a valid range."""
import pytest

from bridge.globs import GlobError, PatternList, compile_pattern


@pytest.mark.parametrize("pattern, yes, no", [
    ("[a-a]x", "ax", "bx"),
    ("v[0-0]", "v0", "v1"),
    ("[Z-Z]", "Z", "Y"),
    ("[a-c]", "b", "d"),
])
def test_ranges_include_both_ends(pattern, yes, no):
    assert compile_pattern(pattern).match(yes) is True
    assert compile_pattern(pattern).match(no) is False
    assert PatternList([pattern]).matches(yes)


def test_a_backwards_range_is_refused():
    with pytest.raises(GlobError, match="bad range 'c-a'"):
        compile_pattern("[c-a]")
