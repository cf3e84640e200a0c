"""One static analysis of a notebook, shared by ``nb2prod check`` and ``package``: no kernel.

Each code cell is parsed once (IPython magic lines blanked so the rest can still be read) and its
module-level scope read once with ``symtable``. From those: the names service code reads from cells
that do not go into the service (:class:`Dependency`), and the values among them that are exported
with the model (fitted state, :class:`FittedValue`). The check rules (``check.py``) and the
extraction (``extract.py``) both read this one analysis.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from types import MappingProxyType
from typing import Literal

from ..errors import NotebookError
from .annotations import AnnotatedNotebook, Cell, Role

_MAGIC = re.compile(r"^\s*(!|%)")
_BUILTINS = set(dir(builtins)) | {"__name__", "__file__", "__doc__", "__builtins__"}
_COMPREHENSIONS = ("<listcomp", "<setcomp", "<dictcomp", "<genexpr")

BindingKind = Literal["value", "function", "class", "module"]


@dataclass(frozen=True)
class MagicLine:
    """A line of IPython syntax: a shell escape (``!cmd``) or a magic (``%cmd``, ``%%cmd``)."""

    number: int  # counting from 1
    text: str


def magic_lines(source: str) -> tuple[MagicLine, ...]:
    """Every line of ``source`` that is IPython syntax rather than Python."""
    return tuple(
        MagicLine(number, line)
        for number, line in enumerate(source.splitlines(), start=1)
        if _MAGIC.match(line)
    )


@dataclass(frozen=True)
class Scope:
    """What one cell binds and reads at module level."""

    defined: frozenset[str]  # names the cell binds at module level
    used: frozenset[str]  # names it reads from module level or builtins, and does not bind
    at_import: frozenset[str]  # of those, the ones read when the module runs (not in a function)


@dataclass(frozen=True)
class ParsedCell:
    """One code cell read as Python, once."""

    cell: Cell
    magics: tuple[MagicLine, ...]  # blanked (``pass``) in ``tree``
    tree: ast.Module | None  # None: a cell magic (``%%``), or not valid Python
    error: SyntaxError | None  # why ``tree`` is None, unless the cell is a cell magic
    scope: Scope | None  # None exactly when ``tree`` is

    @property
    def is_cell_magic(self) -> bool:
        return _is_cell_magic(self.cell)

    def source_error(self) -> SyntaxError | None:
        """The syntax error of the cell's own source, magic lines included, if it has one."""
        if not self.magics:
            return self.error  # the tree was parsed from the source itself
        try:  # only asked of a cell that has findings already: a magic, and no tree
            ast.parse(self.cell.source)
        except SyntaxError as exc:
            return exc
        return None


@dataclass(frozen=True)
class Dependency:
    """A name service code reads that no service cell defines."""

    name: str
    reader: Cell  # the service cell that reads it
    origin: Cell | None  # the last cell that runs and binds it (None: only skip cells, or none)
    kind: BindingKind | None  # how the origin binds it
    at_import: bool  # read while the service module is imported, not inside a function
    skipped: Cell | None = None  # a skip cell binding it, when no running cell does


@dataclass(frozen=True)
class FittedValue:
    """A value from a train, model or untagged cell that service code reads: a release artifact."""

    name: str
    cell: Cell
    read_by: tuple[Cell, ...]
    # what the readers take from it, as written (``train_X.columns``, ``stats.median()``), when
    # they only ever read attributes of it; empty when some reader uses the value itself
    reads: tuple[str, ...] = ()

    @property
    def role(self) -> str:
        return role_name(self.cell)

    @property
    def readers(self) -> str:
        """``preprocess (cell 7) and fallback (cell 9)``."""
        return " and ".join(f"{c.role} (cell {c.index})" for c in self.read_by)


def role_name(cell: Cell) -> str:
    """How messages name the part a cell plays: its role, ``parameters`` or ``untagged``."""
    return "parameters" if cell.is_parameters else str(cell.role or "untagged")


@dataclass(frozen=True)
class NotebookAnalysis:
    """A notebook's cells as Python, what service code reads from elsewhere, its fitted state."""

    notebook: AnnotatedNotebook
    cells: Mapping[int, ParsedCell]  # by cell index, in notebook order
    dependencies: tuple[Dependency, ...]  # in service-cell order, then by name
    fitted: tuple[FittedValue, ...]  # in notebook order

    @cached_property
    def trees(self) -> dict[int, ast.Module]:
        """The syntax trees of the cells that run at package time (not ``skip``), by index."""
        return {
            index: parsed.tree
            for index, parsed in self.cells.items()
            if parsed.tree is not None and parsed.cell.role is not Role.SKIP
        }

    @cached_property
    def service_reads(self) -> frozenset[str]:
        """Every name service code reads anywhere (module level, functions, class bodies),
        including names its own cell binds: what an import in a service cell is used for."""
        return frozenset(
            node.id
            for cell in self.notebook.service_cells
            if (tree := self.trees.get(cell.index)) is not None
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store)
        )

    def bound_by_running_cells(self) -> frozenset[str]:
        """Every module-level name some cell that runs at package time binds (not ``skip``)."""
        return frozenset(
            name
            for parsed in self.cells.values()
            if parsed.scope is not None and parsed.cell.role is not Role.SKIP
            for name in parsed.scope.defined
        )


def analyse(notebook: AnnotatedNotebook) -> NotebookAnalysis:
    """Parse every code cell once and follow the names service code reads."""
    cells = MappingProxyType({cell.index: parse_cell(cell) for cell in notebook.cells})
    found = _dependencies(notebook, cells)
    fitted = tuple(
        replace(value, reads=attribute_reads(value.name, [cells[c.index] for c in value.read_by]))
        for value in fitted_state(found)
    )
    return NotebookAnalysis(notebook, cells, found, fitted)


def parse_cell(cell: Cell) -> ParsedCell:
    """The cell as Python, magic lines blanked so the rest can still be analysed."""
    magics = magic_lines(cell.source)
    if _is_cell_magic(cell):  # the whole cell is the magic's input, not Python
        return ParsedCell(cell, magics, tree=None, error=None, scope=None)
    source = _blanked(cell.source) if magics else cell.source
    try:
        tree = ast.parse(source, filename=f"cell {cell.index}")
        scope = _scope(source)  # symtable finds a few errors the parser lets through
    except SyntaxError as exc:
        return ParsedCell(cell, magics, tree=None, error=exc, scope=None)
    return ParsedCell(cell, magics, tree=tree, error=None, scope=scope)


def _is_cell_magic(cell: Cell) -> bool:
    return cell.first_line.startswith("%%")


def _blanked(source: str) -> str:
    return "\n".join(
        (m.group(0)[:-1] + "pass") if (m := _MAGIC.match(line)) else line
        for line in source.splitlines()
    )


def _scope(source: str) -> Scope:
    """The cell's module-level names, from the symbol table of its (parseable) source."""
    table = symtable.symtable(source, "cell", "exec")
    defined = {s.get_name() for s in table.get_symbols() if _binds(s)}
    used: set[str] = set()
    at_import: set[str] = set()

    def walk(scope: symtable.SymbolTable, deferred: bool) -> None:
        for symbol in scope.get_symbols():
            if not symbol.is_referenced():
                continue
            if scope is table:
                if not _binds(symbol):
                    used.add(symbol.get_name())
                    at_import.add(symbol.get_name())
            elif symbol.is_global():  # read inside a function, class or comprehension
                used.add(symbol.get_name())
                if not deferred:
                    at_import.add(symbol.get_name())
        for child in scope.get_children():
            # a def or lambda body runs when called; a class body or comprehension runs where it is
            runs_later = child.get_type() == "function" and not child.get_name().startswith(
                _COMPREHENSIONS
            )
            walk(child, deferred or runs_later)

    walk(table, deferred=False)
    return Scope(frozenset(defined), frozenset(used - defined), frozenset(at_import - defined))


def _binds(symbol: symtable.Symbol) -> bool:
    return symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace()


def _binding_kinds(tree: ast.Module) -> dict[str, BindingKind]:
    """How a cell binds each module-level name; the last binding in the cell wins."""
    kinds: dict[str, BindingKind] = {}

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                kinds[node.name] = "function"
            elif isinstance(node, ast.ClassDef):
                kinds[node.name] = "class"
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    kinds[alias.asname or alias.name.split(".")[0]] = "module"
            else:
                for child in ast.walk(node):
                    if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                        kinds[child.id] = "value"
                for field in ("body", "orelse", "finalbody", "handlers"):
                    nested = getattr(node, field, None)
                    if isinstance(nested, list):
                        visit([n for n in nested if isinstance(n, ast.stmt)])
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return kinds


def _dependencies(
    notebook: AnnotatedNotebook, cells: Mapping[int, ParsedCell]
) -> tuple[Dependency, ...]:
    """Every name the service cells read from outside the service, with where it comes from."""
    service = [
        (cell, scope)
        for cell in notebook.service_cells
        if (scope := cells[cell.index].scope) is not None
    ]
    provided = set().union(*(scope.defined for _, scope in service))
    if not notebook.has_role(Role.CONTRACT):
        provided |= {"Input", "Output"}  # inferred in the kernel and put into the service
    running, skipped = _bindings_outside_the_service(notebook, cells)
    found = []
    for cell, scope in service:
        for name in sorted(scope.used - provided - _BUILTINS):
            origin, kind = running.get(name, (None, None))
            found.append(
                Dependency(
                    name=name,
                    reader=cell,
                    origin=origin,
                    kind=kind,
                    at_import=name in scope.at_import,
                    skipped=skipped.get(name) if origin is None else None,
                )
            )
    return tuple(found)


def _defined(parsed: ParsedCell) -> frozenset[str]:
    return parsed.scope.defined if parsed.scope is not None else frozenset()


def _bindings_outside_the_service(
    notebook: AnnotatedNotebook, cells: Mapping[int, ParsedCell]
) -> tuple[dict[str, tuple[Cell, BindingKind]], dict[str, Cell]]:
    """Names bound by cells that run but are not in the service (the last binding wins), and
    names bound only by skip cells (the first one found)."""
    running: dict[str, tuple[Cell, BindingKind]] = {}
    skipped: dict[str, Cell] = {}
    for cell in notebook.cells:
        parsed = cells[cell.index]
        if cell.goes_into_service or parsed.tree is None:
            continue
        if cell.role is Role.SKIP:
            for name in _defined(parsed):
                skipped.setdefault(name, cell)
            continue
        kinds = _binding_kinds(parsed.tree)
        for name in _defined(parsed):
            running[name] = (cell, kinds.get(name, "value"))
    return running, skipped


def fitted_state(found: tuple[Dependency, ...]) -> tuple[FittedValue, ...]:
    """The values service code reads from train, model or untagged cells, in notebook order:
    exported with the model as release artifacts."""
    readers: dict[str, tuple[Cell, list[Cell]]] = {}
    for dep in found:
        if dep.origin is not None and dep.kind == "value" and not dep.at_import:
            readers.setdefault(dep.name, (dep.origin, []))[1].append(dep.reader)
    values = [FittedValue(name, cell, tuple(read_by)) for name, (cell, read_by) in readers.items()]
    return tuple(sorted(values, key=lambda v: (v.cell.index, v.name)))


def attribute_reads(name: str, readers: list[ParsedCell]) -> tuple[str, ...]:
    """The attribute accesses (with their call, if called) through which ``readers`` use the
    global ``name``, in source order; empty when any use is of the value itself (an argument, an
    index, an operand), since then the whole value is needed."""
    found: list[str] = []
    for parsed in readers:
        if parsed.tree is None:
            continue
        parents = {
            child: node for node in ast.walk(parsed.tree) for child in ast.iter_child_nodes(node)
        }
        for node in ast.walk(parsed.tree):
            if not (
                isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)
            ):
                continue
            parent = parents.get(node)
            if not isinstance(parent, ast.Attribute):
                return ()
            outer = parents.get(parent)
            used = outer if isinstance(outer, ast.Call) and outer.func is parent else parent
            found.append(ast.unparse(used))
    return tuple(dict.fromkeys(found))


def single_output_field(analysis: NotebookAnalysis) -> str:
    """The one field of Output, which the default postprocess fills from each raw item.

    Raises :class:`NotebookError` naming the contract cell when Output has more or fewer fields
    (``extract`` stops there; ``check`` reports it as NB213).
    """
    notebook = analysis.notebook
    for cell in notebook.with_role(Role.CONTRACT):
        tree = analysis.cells[cell.index].tree
        for node in tree.body if tree is not None else ():
            if isinstance(node, ast.ClassDef) and node.name == "Output":
                fields = [
                    stmt.target.id
                    for stmt in node.body
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                ]
                if len(fields) == 1:
                    return fields[0]
                raise NotebookError(
                    f"{notebook.path}: {cell.label}: there is no `postprocess` cell, so Output "
                    f"must have exactly one field to fill from the model's predictions; "
                    f"it has {len(fields)} ({', '.join(fields) or 'none'})",
                    hint="Add a cell `#| nb2prod: postprocess` defining "
                    "`def postprocess(raw, inputs) -> list[Output]`.",
                    cell=cell.index,
                )
    raise NotebookError(
        f"{notebook.path}: no contract cell defines `class Output`",
        hint="Define `class Output(BaseModel)` in the cell marked `#| nb2prod: contract`.",
    )
