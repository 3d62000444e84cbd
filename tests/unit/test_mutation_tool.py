"""The mutation-testing tool itself (tests/mutation/): its operators on a small function, and its
table check failing clearly when a module moved (as the restructure will move them)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "mutation"))

import mutants  # noqa: E402
import run  # noqa: E402

SOURCE = '''
import logging
log = logging.getLogger("x")


def cap(body, limit):
    """Docstring."""
    if len(body) > limit:
        log.warning("over %d", limit + 1)
        raise ValueError("too big")
    return body[:limit]


def other(x):
    return x == 1
'''


def test_the_operators():
    changes = {m.key for m in mutants.mutants("m.py", SOURCE, ["cap"])}
    assert changes == {
        "cap :: negate: 'len(body) > limit'",
        "cap :: flip: 'len(body) > limit' -> 'len(body) <= limit'",
        "cap :: boundary: 'len(body) > limit' -> 'len(body) >= limit'",
        "cap :: delete: \"raise ValueError('too big')\"",
        "cap :: return None: 'return body[:limit]'",
    }      # nothing inside the log call, nothing in `other`, the docstring kept


def test_each_mutant_compiles_and_differs():
    for m in mutants.mutants("m.py", SOURCE):
        compile(m.source, "m.py", "exec")
        assert m.source != mutants.baseline(SOURCE), m.key


def test_a_moved_module_fails_clearly(monkeypatch):
    monkeypatch.setitem(run.TARGETS, "moved", {"path": "bridge/ingress_gone.py", "tests": ["tests/test_ingress.py"]})
    with pytest.raises(SystemExit, match="moved: path bridge/ingress_gone.py does not exist"):
        run.check_table(["moved"])
    monkeypatch.setitem(run.TARGETS, "moved", {"path": "bridge/rules.py", "tests": ["tests/nope.py"],
                                               "functions": ["no_such_function"]})
    with pytest.raises(SystemExit) as caught:
        run.check_table(["moved"])
    assert "test file tests/nope.py does not exist" in str(caught.value)
    assert "function no_such_function is not in bridge/rules.py" in str(caught.value)


def test_the_table_is_valid_today():
    run.check_table(list(run.TARGETS))
    assert run.load_equivalents()


def test_again_reads_the_survivors_of_a_previous_output(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("\n".join([
        "  killed    bridge/x.py:3 cap :: negate: 'a'",
        "  survived  bridge/x.py:4 cap :: flip: 'a > b' -> 'a <= b'",
        "  timeout   bridge/x.py:5 <module> :: int: 1 -> 2 in 'N = 1'",
        "  SURVIVED bridge/x.py:4 cap: flip: 'a > b' -> 'a <= b'",
        "  SURVIVED bridge/y.py:9 other: negate: 'b'",
        "  SURVIVED bridge/x.py:7 Store.claim: return None: 'return []'",
    ]))
    assert run.survivors_of(str(out), "bridge/x.py") == {
        "4 cap :: flip: 'a > b' -> 'a <= b'", "5 <module> :: int: 1 -> 2 in 'N = 1'",
        "7 Store.claim :: return None: 'return []'"}
