"""Ref names checked with git's own rules (`git check-ref-format`, refs.c), in Python.

Input: a full ref name from a verified payload (`refs/heads/main`). Output: None when git would
accept it as a branch or tag, else a short reason; providers turn that into a 400 at ingress.
"""
from __future__ import annotations

#: Characters git refuses anywhere in a ref name (refs.c `refname_disposition` 4 and 5; a
#: refspec pattern's `*` is never a pushed ref). Bytes >= 0x80 (UTF-8) are allowed, as in git.
_BAD_CHARS = frozenset(chr(c) for c in range(0x20)) | frozenset("\x7f ~^:?*[\\")
_SHOWN = {" ": "space", "\x7f": "DEL"}


def _char_name(ch: str) -> str:
    if ch in _SHOWN:
        return _SHOWN[ch]
    if ord(ch) < 0x20:
        return f"control character U+{ord(ch):04X}"
    return f"'{ch}'"


def check_ref_format(ref: str) -> str | None:
    """Why git would refuse `ref` (`git check-ref-format REF`), or None when it is fine.

    The rules: no control character, space or any of ``~^:?*[\\``; no ``..`` and no ``@{``;
    no empty component (a leading, trailing or doubled ``/``); no component that starts with
    ``.`` or ends with ``.lock``; not ending with ``.``; not ``@``; at least two components.
    """
    if not isinstance(ref, str) or not ref:
        return "it is empty"
    if ref == "@":
        return "it is '@'"
    for ch in ref:
        if ch in _BAD_CHARS:
            return f"it contains {_char_name(ch)}"
    if ".." in ref:
        return "it contains '..'"
    if "@{" in ref:
        return "it contains '@{'"
    components = ref.split("/")
    for part in components:
        if not part:
            return ("it ends with '/'" if ref.endswith("/") else
                    "it starts with '/'" if ref.startswith("/") else "it contains '//'")
        if part.startswith("."):
            return f"its component '{part[:50]}' starts with '.'"
        if part.endswith(".lock"):
            return f"its component '{part[:50]}' ends with '.lock'"
    if ref.endswith("."):
        return "it ends with '.'"
    if len(components) < 2:
        return "it has a single component"
    return None


def branch_or_tag_problem(ref: str) -> str | None:
    """Why `ref` is not a branch or tag name git would create, or None. Beyond
    `check_ref_format`: the short name may not start with '-' (`git branch`/`git tag` refuse
    it: it would read as an option), and a branch may not be named HEAD."""
    why = check_ref_format(ref)
    if why is not None:
        return why
    for prefix, what in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            name = ref[len(prefix):]
            if name.startswith("-"):
                return f"the {what} name starts with '-'"
            if what == "branch" and name == "HEAD":
                return "the branch is named 'HEAD'"
    return None


__all__ = ["branch_or_tag_problem", "check_ref_format"]
