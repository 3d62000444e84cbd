"""rules.yaml's YAML built from the parser's events (config/yamlload.py): values, lines and faults
as the node walk before it gave them, and a syntax error anywhere still the one reported."""
from __future__ import annotations

import pytest

from bridge.config.yamlload import LineDict, LineList, YamlError, load


def fault(text: str) -> tuple[int, str]:
    with pytest.raises(YamlError) as exc:
        load(text)
    return exc.value.line, exc.value.message


def test_values_and_their_lines():
    doc = load("a: 1\nb:\n  - x\n  - {c: true, d: ~}\n  - [2.5, '3']\non: yes\n")
    assert doc == {"a": 1, "b": ["x", {"c": True, "d": None}, [2.5, "3"]], "on": True}
    assert isinstance(doc, LineDict) and isinstance(doc["b"], LineList)
    assert doc.line == 1 and doc.key_lines == {"a": 1, "b": 2, "on": 6}
    assert doc["b"].line == 3 and doc["b"].item_lines == [3, 4, 5]
    assert doc["b"][1].line == 4 and doc["b"][1].line_of("d") == 4


def test_empty_documents():
    assert load("") == {} and load("# only a comment\n") == {}
    assert load("---\n") is None


@pytest.mark.parametrize("text, expected", [
    ("a: &x [1]\nb: *x\n", (1, "YAML anchors and aliases (&name, *name) are not supported in rules.yaml")),
    ("a: 1\nb: *nowhere\n", (2, "invalid YAML: found undefined alias")),
    ("a: &x 1\nb: &x 2\n", (2, "invalid YAML: second occurrence")),
    ("a: 1\n---\nb: 2\n", (2, "invalid YAML: but found another document")),
    ("a: {<<: {b: 1}}\n", (1, "YAML merge keys (<<) are not supported")),
    ("? [a]\n: b\n", (1, "mapping keys must be plain scalars")),
    ("a: !x 1\n", (1, "unsupported YAML tag '!x'")),
    ("a: !!set {x}\n", (1, "unsupported YAML tag 'tag:yaml.org,2002:set'")),
    ("a: 1\na: 2\n", (2, "duplicate key 'a' (first at line 1)")),
])
def test_faults_and_their_lines(text, expected):
    assert fault(text) == expected


def test_a_quoted_merge_key_is_a_plain_key():
    assert load("'<<': 1\n") == {"<<": 1}


def test_a_syntax_error_later_in_the_file_wins_over_an_earlier_fault():
    assert fault("a: !x 1\nb: [1, 2\n") == (3, "invalid YAML: did not find expected ',' or ']'")


def test_duplicates_collected_keep_the_first_value():
    duplicates = []
    doc = load("a: 1\nb: {c: 1, c: 2}\na: 3\n", duplicates=duplicates)
    assert doc == {"a": 1, "b": {"c": 1}}
    assert [(d.line, d.key, d.first_line) for d in duplicates] == [(2, "c", 2), (3, "a", 1)]


def test_deep_nesting_is_built_without_recursion_or_refused_with_a_line():
    depth = 900          # libyaml's own limit is 1,000 levels
    value = load("a: " + "[" * depth + "]" * depth + "\n")["a"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == []
    line, message = fault("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert line == 1 and message.startswith("invalid YAML: ")
