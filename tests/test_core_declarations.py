"""``src/volfast/_core.pyi`` declares what the built extension has: the same names, the same parameters."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

import volfast
from volfast._native import core

STUB = Path(volfast.__file__).with_name("_core.pyi")


def _declarations() -> ast.Module:
    return ast.parse(STUB.read_text())


def _params(fn: ast.FunctionDef) -> list[str]:
    return [a.arg for a in fn.args.args if a.arg != "self"]


def _pybind_params(obj: Any) -> list[str]:
    """Parameter names from pybind11's signature line ``name(a: T, b: T = 0) -> R``."""
    first = (obj.__doc__ or "").strip().splitlines()[0]
    inside = first[first.index("(") + 1 : first.rindex(")")]
    names = re.findall(r"(?:^|,\s*)(\w+)\s*:", inside)
    return [n for n in names if n != "self"]


def _public(mod: Any) -> set[str]:
    return {n for n in dir(mod) if not n.startswith("_")}


def test_declarations_ship_beside_the_package() -> None:
    assert STUB.is_file() and (STUB.parent / "py.typed").is_file()


def test_module_functions_match() -> None:
    c = core()
    tree = _declarations()
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    attrs = {
        t.target.id for t in tree.body if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)
    }
    assert set(fns) | (attrs - {"__version__"}) == _public(c)
    for name, fn in fns.items():
        assert _params(fn) == _pybind_params(getattr(c, name)), name


@pytest.mark.parametrize(
    ("cls", "attr"), [("_Black76", "black76"), ("_Snapshot", "snapshot"), ("_Reducer", None)]
)
def test_submodules_match(cls: str, attr: str | None) -> None:
    c = core()
    node = next(n for n in _declarations().body if isinstance(n, ast.ClassDef) and n.name == cls)
    target = getattr(c, attr) if attr else c.snapshot.Reducer
    fns = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"}
    ann = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert set(fns) | ann == _public(target), cls
    for name, fn in fns.items():
        is_prop = any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)
        if not is_prop:
            assert _params(fn) == _pybind_params(getattr(target, name)), (cls, name)
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is not None:
        assert _params(init) == _pybind_params(target.__init__)
