"""An import-linter contract: no module imports another module's `_private` name.

    from shared.api.handlers import _context      broken: handlers keeps `_context` to itself
    from shared.api.endpoint import context        kept: a public seam

Dunder names (`__version__`) are not private. Attribute access (`handlers._context`) is ruff's SLF001; this
contract covers what ruff leaves out: names imported between modules of one package. Function-local
imports count like any other (grimp finds them all).
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@cache
def _imports_by_line(module: str) -> dict[int, list[ast.ImportFrom]]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return {}
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read(), filename=spec.origin)
    found: dict[int, list[ast.ImportFrom]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.setdefault(node.lineno, []).append(node)
    return found


class PrivateNamesContract(Contract):
    """Configuration: `containers`, the packages whose modules must keep their private names."""

    type_name = "private_names"

    containers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        broken: list[str] = []
        modules = {m for c in self.containers for m in (graph.find_descendants(c) | {c})}  # type: ignore[attr-defined]
        for importer in sorted(modules):
            for imported in sorted(graph.find_modules_directly_imported_by(importer) & modules):
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    for node in _imports_by_line(importer).get(detail["line_number"], []):
                        broken += [
                            f"{importer} imports {alias.name} from {imported} (l.{node.lineno})"
                            for alias in node.names
                            if _private(alias.name)
                        ]
        return ContractCheck(kept=not broken, warnings=[], metadata={"broken": sorted(set(broken))})

    def render_broken_contract(self, check: ContractCheck) -> None:
        output.print_error("A module imports another module's private name:", bold=False)
        output.new_line()
        for line in check.metadata["broken"]:
            output.print_error(f"- {line}", bold=False)
        output.new_line()
