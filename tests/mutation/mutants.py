"""Mutation testing, stage 1: one Python source file -> its mutants.

Input: a module's source and (optionally) the functions to mutate. Output: `Mutant`s, each the
whole mutated source plus where (line, enclosing function) and what changed. The operators are
the five of issue 21: flip a comparison (and shift its boundary), negate a condition, delete a
statement, return None, shift an integer constant by one.
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

_FLIP = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE,
         ast.LtE: ast.Gt, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_DELETABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Raise, ast.Delete,
              ast.Continue, ast.Break, ast.Return)
#: Calls whose arguments are a log line's wording, not behaviour: no mutant inside them.
_LOG_OBJECTS = {"log", "logger", "logging", "_log", "self._log", "self.log"}


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    function: str          # enclosing qualified name ("Store.claim"), "" at module level
    change: str            # e.g. "flip: 'a > b' -> 'a <= b'"
    source: str            # the whole mutated module

    @property
    def key(self) -> str:
        """Stable across line moves: what equivalents.txt names."""
        return f"{self.function or '<module>'} :: {self.change}"


def _short(node: ast.AST, limit: int = 70) -> str:
    text = ast.unparse(node).split("\n", 1)[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_log_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        base = ast.unparse(func.value)
        return base in _LOG_OBJECTS or ast.unparse(func) in _LOG_OBJECTS
    return isinstance(func, ast.Name) and func.id in _LOG_OBJECTS


class _Sites(ast.NodeVisitor):
    """Walks a module in a fixed order, collecting (node id, kind, detail, line, function)."""

    def __init__(self, functions: set[str] | None, pragma_lines: set[int]):
        self.functions = functions
        self.pragma = pragma_lines
        self.stack: list[str] = []
        self.sites: list[tuple] = []
        self.in_log = 0

    @property
    def qualname(self) -> str:
        return ".".join(self.stack)

    def _wanted(self, node) -> bool:
        if self.in_log or getattr(node, "lineno", None) in self.pragma:
            return False
        if self.functions is None:
            return True
        name = self.qualname
        return any(name == f or name.startswith(f + ".") for f in self.functions)

    def _scope(self, node):
        self.stack.append(node.name)
        if self.functions is not None:
            # A decorator or default is evaluated outside the function: only the body counts.
            self._statements(node, ("body",))
            for stmt in node.body:
                self.visit(stmt)
        else:
            self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

    def visit_Call(self, node):
        if _is_log_call(node):
            self.in_log += 1
            self.generic_visit(node)
            self.in_log -= 1
        else:
            self.generic_visit(node)

    def add(self, node, kind, detail=None):
        if self._wanted(node):
            self.sites.append((node, kind, detail, node.lineno, self.qualname))

    def visit_Compare(self, node):
        for i, op in enumerate(node.ops):
            self.add(node, "flip", i)
            if type(op) in _BOUNDARY:
                self.add(node, "boundary", i)
        self.generic_visit(node)

    def _cond(self, node):
        self.add(node, "negate")
        self.generic_visit(node)

    visit_If = visit_While = visit_IfExp = _cond

    def visit_Constant(self, node):
        if type(node.value) is int:
            self.add(node, "int")

    def visit_JoinedStr(self, node):
        self.generic_visit(node)

    def generic_visit(self, node):
        self._statements(node)
        super().generic_visit(node)

    def _statements(self, node, fields=("body", "orelse", "finalbody")):
        for field in fields:
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                for stmt in stmts:
                    if self.stack and not isinstance(node, ast.ClassDef) and self._deletable(stmt):
                        self.add(stmt, "delete")
                    if isinstance(stmt, ast.Return) and stmt.value is not None and not (
                            isinstance(stmt.value, ast.Constant) and stmt.value.value is None):
                        self.add(stmt, "return_none")

    @staticmethod
    def _deletable(stmt) -> bool:
        if not isinstance(stmt, _DELETABLE):
            return False
        if isinstance(stmt, ast.Expr) and (isinstance(stmt.value, ast.Constant) or _is_log_call(stmt.value)):
            return False           # a docstring, or a log line
        if isinstance(stmt, ast.Return) and stmt.value is not None:
            return False           # return_none covers it
        return True


def _apply(node, kind, detail) -> str:
    """Mutate `node` in place; return the change's description."""
    before = _short(node)
    if kind in ("flip", "boundary"):
        old = node.ops[detail]
        table = _FLIP if kind == "flip" else _BOUNDARY
        node.ops[detail] = table[type(old)]()
        return f"{kind}: {before!r} -> {_short(node)!r}"
    if kind == "negate":
        test = node.test
        node.test = test.operand if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) \
            else ast.UnaryOp(op=ast.Not(), operand=test)
        return f"negate: {_short(test)!r}"
    if kind == "int":
        parent = getattr(node, "parent", None)
        where = f" in {_short(parent, 60)!r}" if parent is not None else ""
        node.value += 1
        return f"int: {before} -> {node.value}{where}"
    if kind == "return_none":
        node.value = ast.Constant(value=None)
        return f"return None: {before!r}"
    raise AssertionError(kind)


class _Deleter(ast.NodeTransformer):
    def __init__(self, target):
        self.target = target

    def generic_visit(self, node):
        self._statements(node)
        super().generic_visit(node)

    def _statements(self, node, fields=("body", "orelse", "finalbody")):
        for field in fields:
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                setattr(node, field, [ast.Pass() if s is self.target else s for s in stmts])
        return super().generic_visit(node)


def _pragma_lines(source: str) -> set[int]:
    return {i for i, line in enumerate(source.splitlines(), 1) if "pragma: no mutate" in line}


def baseline(source: str) -> str:
    """The module as the mutants are written (ast.unparse), unmutated: the tests must pass on it."""
    return ast.unparse(ast.parse(source))


def mutants(path: str, source: str, functions: list[str] | None = None) -> list[Mutant]:
    tree = ast.parse(source)
    sites = _Sites(set(functions) if functions else None, _pragma_lines(source))
    sites.visit(tree)
    out = []
    for index in range(len(sites.sites)):
        clone = copy.deepcopy(tree)           # same walk order: the index finds the same node
        walker = _Sites(sites.functions, sites.pragma)
        walker.visit(clone)
        node, kind, detail, line, func = walker.sites[index]
        if kind == "int":      # an integer's change names the expression it sits in
            for parent in ast.walk(clone):
                for child in ast.iter_child_nodes(parent):
                    if child is node:
                        node.parent = parent
        if kind == "delete":
            change = f"delete: {_short(node)!r}"
            _Deleter(node).visit(clone)
        else:
            change = _apply(node, kind, detail)
        ast.fix_missing_locations(clone)
        out.append(Mutant(path, line, func, change, ast.unparse(clone)))
    return out


def function_names(source: str) -> set[str]:
    """Every qualified function/class name in `source` (to check the table's `functions`)."""
    names: set[str] = set()

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                names.add(name)
                walk(child, name + ".")
            else:
                walk(child, prefix)
    walk(ast.parse(source), "")
    return names
