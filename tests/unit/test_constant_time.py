"""Every comparison of a secret, token, signature or digest in bridge/ goes through
`hmac.compare_digest`: an ast scan for `==`, `!=`, `in`, `not in` with such a value on either
side (no mutation test can see it: `==` differs only in timing). Planted examples prove the scan
fails where it must."""
from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"

#: An identifier word that names a credential or a value derived from one.
_SECRET_WORD = re.compile(r"^(secrets?|tokens?|signatures?|sigs?|digests?|hexdigest|hmac|macs?|"
                          r"passwords?|passwd|credentials?|apikey|bearer|auth)$", re.I)
#: A last word that makes the identifier a name *of* a secret, not one: `SIGNATURE_HEADER`.
_NAME_OF = {"header", "headers", "name", "names", "field", "fields", "kind", "prefix", "prefixes",
            "count", "env", "var", "ref", "refs", "path", "file"}
#: A header name or key that carries one ("X-Gitlab-Token", "X-Hub-Signature-256", "Authorization").
_SECRET_KEY = re.compile(r"token|signature|authorization|secret|password", re.I)
#: Calls that keep a secret a secret (a transformed secret is still compared by content).
_PASS_THROUGH = {"encode", "decode", "lower", "upper", "strip", "rstrip", "lstrip", "group", "bytes",
                 "str", "removeprefix", "removesuffix", "match", "fullmatch", "search"}
#: Identifiers that merely look like secrets: (file relative to bridge/, identifier) -> why not.
NOT_SECRETS = {
    ("globs.py", "token"): "a glob pattern's parse token ('one', '?'), not a credential",
    ("codebuild.py", "_CREDENTIALS"): "a set of AWS error codes, compared to an error code",
}


def _words(identifier: str) -> list[str]:
    return [w for w in re.split(r"_|(?<=[a-z])(?=[A-Z])", identifier) if w]


def holds_secret(node: ast.AST, allowed: set[str], tainted: frozenset = frozenset()) -> str | None:
    """The identifier or key that makes `node` a secret-bearing value, else None. `tainted`:
    local names assigned from such a value (`expected = hmac.new(...).hexdigest()`)."""
    if isinstance(node, ast.Name) and node.id in tainted:
        return node.id
    if isinstance(node, ast.Name) or isinstance(node, ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        words = _words(name)
        if (name not in allowed and words and words[-1].lower() not in _NAME_OF
                and any(_SECRET_WORD.match(w) for w in words)):
            return name
        return None
    if isinstance(node, ast.Subscript):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and _SECRET_KEY.search(key.value):
            return key.value
        return holds_secret(node.value, allowed, tainted)
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("hexdigest", "digest"):
            return name
        if isinstance(func, ast.Attribute) and ast.unparse(func) in ("hmac.new", "hmac.digest"):
            return "hmac"
        if name in ("get", "getenv", "getheader") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and _SECRET_KEY.search(first.value):
                return first.value
            if isinstance(first, (ast.Name, ast.Attribute)):     # headers.get(SIGNATURE_HEADER)
                key = first.id if isinstance(first, ast.Name) else first.attr
                if any(_SECRET_WORD.match(w) for w in _words(key)):
                    return key
        if name in _PASS_THROUGH:
            inner = [func.value] if isinstance(func, ast.Attribute) else []
            for arg in inner + list(node.args):
                found = holds_secret(arg, allowed, tainted)
                if found:
                    return found
        return None
    if isinstance(node, ast.JoinedStr):
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                found = holds_secret(part.value, allowed, tainted)
                if found:
                    return found
    if isinstance(node, ast.BinOp):
        return holds_secret(node.left, allowed, tainted) or holds_secret(node.right, allowed, tainted)
    return None


def _tainted(scope: ast.AST, allowed: set[str]) -> frozenset:
    """Names a function assigns from a secret-bearing value, to a fixed point."""
    assigns = [n for n in ast.walk(scope) if isinstance(n, (ast.Assign, ast.AnnAssign, ast.NamedExpr))]
    tainted: set[str] = set()
    while True:
        before = len(tainted)
        for a in assigns:
            targets = a.targets if isinstance(a, ast.Assign) else [a.target]
            if a.value is not None and holds_secret(a.value, allowed, frozenset(tainted)):
                tainted.update(t.id for t in targets if isinstance(t, ast.Name))
        if len(tainted) == before:
            return frozenset(tainted)


def content_comparisons(source: str, allowed: set[str] = frozenset()) -> list[tuple[int, str, str]]:
    """(line, comparison, secret) for every ==, !=, in, not in that has a secret on a side.
    `x is None` and `not x` say nothing about the content and are fine."""
    out = []
    tree = ast.parse(source)
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    seen = set()
    for scope in reversed(scopes):          # innermost functions first: their own assignments
        tainted = _tainted(scope, allowed) if scope is not tree else frozenset()
        for node in ast.walk(scope):
            if isinstance(node, ast.Compare) and id(node) not in seen:
                seen.add(id(node))
                out.extend(_secret_compares(node, allowed, tainted))
    return sorted(out)


def _secret_compares(node: ast.Compare, allowed, tainted) -> list[tuple[int, str, str]]:
    out = []
    operands = [node.left, *node.comparators]
    for i, op in enumerate(node.ops):
        if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
            continue
        pair = operands[i:i + 2]
        if any(isinstance(o, ast.Constant) and o.value in (None, "", b"") for o in pair):
            continue        # present or not, never its content
        for side in pair:
            found = holds_secret(side, allowed, tainted)
            if found:
                out.append((node.lineno, ast.unparse(node), found))
                break
    return out


def test_no_secret_is_compared_with_eq_or_in():
    found = []
    for path in sorted(BRIDGE.rglob("*.py")):
        rel = str(path.relative_to(BRIDGE)).split("/")[-1]
        allowed = {name for (file, name) in NOT_SECRETS if file == rel}
        for line, text, secret in content_comparisons(path.read_text(encoding="utf-8"), allowed):
            found.append(f"bridge/{path.relative_to(BRIDGE)}:{line}: {text}  ({secret}: use hmac.compare_digest)")
    assert not found, "\n".join(found)


def test_the_exceptions_still_exist():
    # A stale entry would silently widen the scan's blind spot.
    for (file, name), why in NOT_SECRETS.items():
        [path] = list(BRIDGE.rglob(file))
        assert re.search(rf"\b{re.escape(name)}\b", path.read_text(encoding="utf-8")), (file, name, why)


@pytest.mark.parametrize("planted", [
    "ok = given == secret",
    "ok = secret != given",
    "ok = token == self.token",
    "ok = expected == given_signature",
    "ok = given in secrets",
    "ok = given not in self.allowed_tokens",
    "ok = hmac.new(key, body, hashlib.sha256).hexdigest() == header",
    "ok = mac.hexdigest() == header",
    "ok = headers.get('X-Gitlab-Token') == configured",
    "ok = request.headers['Authorization'] == expected",
    "ok = auth[7:].encode() == settings.admin_token.encode('utf-8')",
    "ok = auth == f'Bearer {admin_token}'",
    "ok = webhookSecret == given",
    "ok = given == src.secrets[0]",
    "ok = given.lower() == digest",
    "ok = password == typed",
    """
    def verify(headers, body, secrets):
        header = headers.get(SIGNATURE_HEADER)
        match = _SIGNATURE.fullmatch(header)
        given = match.group(1).lower().encode('ascii')
        for key in secrets:
            expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode('ascii')
            if expected == given:
                return
    """,
])
def test_the_scan_finds_a_planted_comparison(planted):
    assert content_comparisons(textwrap.dedent(planted)), planted


@pytest.mark.parametrize("fine", [
    "ok = hmac.compare_digest(given, secret)",
    "ok = token is None",
    "ok = secret is not None and not given",
    "ok = header == ''",
    "ok = token == None",
    "ok = len(secrets) == 2",
    "ok = name == 'push'",
    "ok = headers.get('X-GitHub-Event') == 'push'",
    "ok = SIGNATURE_HEADER in headers",
])
def test_the_scan_leaves_other_comparisons_alone(fine):
    assert content_comparisons(fine) == [], fine
