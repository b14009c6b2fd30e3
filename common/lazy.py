"""Package `__init__`s that re-export their modules' public names without importing them first.

A package lists its public names once, as `if TYPE_CHECKING:` imports (which type checkers and
readers see), and ends with `__getattr__, __dir__ = lazy_exports(__name__)`. A name is imported
on first use (PEP 562), so `import bot.safety.cli` for `solace --help` does not compile every
crisis pattern, and `from bot.safety import screen_message` still works.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def declared_exports(init_file: str | Path) -> dict[str, tuple[str, str]]:
    """name -> (module, attribute) for every `from module import attribute [as name]` under the
    file's top-level `if TYPE_CHECKING:`."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    names: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                    for alias in stmt.names:
                        names[alias.asname or alias.name] = (stmt.module, alias.name)
    return names


def lazy_exports(package: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level `__getattr__` and `__dir__` for `package` (pass `__name__`)."""
    module = sys.modules[package]
    if module.__file__ is None:
        raise ImportError(f"{package} has no source file to read its exports from")
    exports = declared_exports(module.__file__)

    def __getattr__(name: str) -> Any:
        try:
            source, attribute = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(source), attribute)
        setattr(module, name, value)  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *exports})

    return __getattr__, __dir__
