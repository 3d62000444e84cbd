"""Body parsing shared by the providers: verified raw bytes in, a JSON object (dict) out.

Every way a body can be unusable (not UTF-8, not JSON, too deep, not an object, lone surrogates,
NaN) becomes `BadPayload` with a short reason; `field()`, `sha()` and `commits()` read typed
values out of the result, with the same error for a wrong shape.
"""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from bridge.errors import BadPayload
from bridge.events import Commit
from bridge.refnames import branch_or_tag_problem

FORM_TYPE = "application/x-www-form-urlencoded"

# Only bodies holding an escape in the surrogate range (\uD800-\uDFFF) need the full check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

_JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number",
                    float: "a number", bool: "a boolean", type(None): "null"}


def _reject_constant(name: str):
    # Python's json accepts NaN/Infinity; no git host sends them and no database stores them.
    raise BadPayload(f"JSON body has the non-standard constant '{name}'")


# Built once: json.loads with an argument builds a decoder per call (a third of a parse).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes, content_type: str | None = None, *, form_field: str | None = None) -> dict:
    """Parse a verified delivery body into a dict, or raise `BadPayload`.

    With `form_field` (GitHub's "payload"), an `application/x-www-form-urlencoded` body is
    unwrapped first; the signature was already checked over the raw form bytes.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("body is not valid UTF-8") from None
    if form_field is not None and content_type and content_type.split(";", 1)[0].strip().lower() == FORM_TYPE:
        text = _form_value(text, form_field)
    try:
        if text.startswith("\ufeff"):   # what json.loads refuses before it decodes
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BadPayload(f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise BadPayload("JSON body is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than sys.get_int_max_str_digits()
        raise BadPayload(f"body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadPayload(f"JSON body is {_JSON_TYPE_NAMES.get(type(obj), 'not an object')}, not an object")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        _reject_lone_surrogates(obj)
    if "\\u0000" in text and _has_nul(obj):
        # PostgreSQL cannot store U+0000 in text or JSON: the delivery would get 503 forever.
        raise BadPayload("JSON body has a U+0000 (NUL) character in a string")
    return obj


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _form_value(text: str, form_field: str) -> str:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=100)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("form body is not valid form encoding") from None
    values = [value for key, value in pairs if key == form_field]
    if len(values) != 1:
        raise BadPayload(f"form body has no single '{form_field}' field")
    return values[0]


def _reject_lone_surrogates(obj: dict) -> None:
    # Only paired surrogate escapes decode to text that can be encoded (stored, logged) again;
    # re-encoding is exact where a regex over escapes would be fooled by "\\ud800"-style text.
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadPayload("JSON body has a lone UTF-16 surrogate") from None
    except RecursionError:
        raise BadPayload("JSON body is nested too deeply") from None


_KIND_NAMES = {str: "a string", int: "an integer", bool: "a boolean", list: "a list", dict: "an object"}


def field(obj: dict, path: str, kind: type, *, required: bool = False, default=None, what: str = "push payload"):
    """The value at dotted `path` in `obj`, checked to be a `kind`.

    JSON null counts as absent: `required` raises `BadPayload("<what> has no '<path>'")`,
    otherwise `default` is returned. A value of another type raises BadPayload naming the path.
    """
    value = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            if required:
                raise BadPayload(f"{what} has no '{path}'")
            return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadPayload(f"{what} field '{path}' is not {_KIND_NAMES.get(kind, kind.__name__)}")
    return value


def string_list(obj: dict, key: str, *, what: str) -> tuple[str, ...]:
    """A list of strings (file paths) at `obj[key]`; absent or null is empty."""
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadPayload(f"{what} field '{key}' is not a list of strings")
    return tuple(value)


def ref(obj: dict, path: str = "ref", *, what: str = "push payload") -> str:
    """The full ref at `path`, checked with git's own rules (`git check-ref-format`, and no
    branch or tag name starting with '-'): a name git would refuse never reaches a build, its
    environment or a git command. BadPayload (400) names the rule it breaks."""
    value = field(obj, path, str, required=True, what=what)
    why = branch_or_tag_problem(value)
    if why is not None:
        raise BadPayload(f"{what} field '{path}' is not a ref name git accepts: {why} "
                         f"({value[:200]!r})")
    return value


_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")   # SHA-1, or SHA-256 object format


def sha(obj: dict, path: str, *, required: bool = False, default: str = "", what: str = "push payload") -> str:
    """A commit SHA at `path`: 40 (or 64) lowercase hex digits, or BadPayload naming the path."""
    value = field(obj, path, str, required=required, default=None, what=what)
    if value is None:
        return default
    if not _SHA.fullmatch(value):
        raise BadPayload(f"{what} field '{path}' is not a commit SHA")
    return value


def commits(payload: dict, *, what: str = "push payload") -> tuple[Commit, ...]:
    """`payload["commits"]` as Commits. GitHub and GitLab share this shape; a commit without
    any of added/modified/removed (GitLab System Hooks) gets `has_files=False`."""
    items = field(payload, "commits", list, default=[], what=what)
    result = []
    for i, item in enumerate(items):
        where = f"{what} commits[{i}]"
        if not isinstance(item, dict):
            raise BadPayload(f"{where} is not an object")
        result.append(Commit(
            id=sha(item, "id", required=True, what=where),
            message=field(item, "message", str, default="", what=where),
            author=field(item, "author.name", str, default="", what=where),
            timestamp=field(item, "timestamp", str, default="", what=where),
            added=string_list(item, "added", what=where),
            modified=string_list(item, "modified", what=where),
            removed=string_list(item, "removed", what=where),
            has_files=any(key in item for key in ("added", "modified", "removed")),
        ))
    return tuple(result)
