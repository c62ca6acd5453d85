"""Rules of the codebase that no linter checks for us: one error tree, one event catalogue, one owner of the
environment, and package docstrings a newcomer can find their room by. (Layers and cycles: import-linter,
sizes: .ci/sizes.py, private names: ruff; all in `make lint`.)"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import shared
from shared import events
from shared.errors import SnapshotAppError

PACKAGE = Path(shared.__file__).parent


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(shared.__path__, "shared."))


def _trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(PACKAGE.rglob("*.py"))]


def test_every_exception_class_of_the_package_derives_from_the_one_root():
    outside = [
        f"{name}.{attr}"
        for name in _modules()
        for attr, value in vars(importlib.import_module(name)).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == name
        and not issubclass(value, SnapshotAppError)
    ]
    assert outside == []


def _event_argument(call: ast.Call) -> ast.expr | None:
    if isinstance(call.func, ast.Name) and call.func.id == "log_event" and len(call.args) >= 3:
        return call.args[2]
    return None


def test_every_logged_event_is_named_by_a_constant_of_the_catalogue():
    literal = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (argument := _event_argument(node)) is not None
        and not (
            isinstance(argument, ast.Attribute)
            and isinstance(argument.value, ast.Name)
            and argument.value.id == "events"
            and hasattr(events, argument.attr)
        )
    ]
    assert literal == []


def _package_dirs() -> list[Path]:
    return [PACKAGE, *sorted(p.parent for p in PACKAGE.glob("*/__init__.py"))]


@pytest.mark.parametrize("package", _package_dirs(), ids=lambda p: p.name)
def test_each_package_docstring_names_each_of_its_modules(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
    members = [f"{p.name}" for p in sorted(package.glob("*.py")) if p.name != "__init__.py"] + [
        f"{p.parent.name}/" for p in sorted(package.glob("*/__init__.py"))
    ]
    assert [m for m in members if m not in doc] == []


_ENVIRONMENT = frozenset({"environ", "getenv", "environb"})


def _reads_environment(tree: ast.Module) -> bool:
    return any(
        (
            isinstance(node, ast.Attribute)
            and node.attr in _ENVIRONMENT
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )
        or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in _ENVIRONMENT for alias in node.names)
        )
        for node in ast.walk(tree)
    )


def test_only_the_settings_catalogue_and_the_identity_module_read_the_environment():
    readers = sorted(
        str(path.relative_to(PACKAGE.parent)) for path, tree in _trees() if _reads_environment(tree)
    )
    assert readers == ["shared/identity.py", "shared/settings/__init__.py"]


def test_tests_say_the_behaviour_they_hold_never_an_issue_number():
    tests = PACKAGE.parent / "tests"
    pattern = re.compile(r"\bissue[ _-]?\d", re.IGNORECASE)
    cited = [
        f"{path.relative_to(tests)}:{number}"
        for path in sorted(tests.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert cited == []


def test_the_modules_make_test_starts_first_exist():
    """tests/conftest.py names the longest modules so that make test starts them first: a module renamed
    or moved would quietly run last again."""
    from tests.conftest import LONGEST_FIRST

    root = PACKAGE.parent
    assert [module for module in LONGEST_FIRST if not (root / module).is_file()] == []
