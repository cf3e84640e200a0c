"""Annotations (``package``'s parse stage): read a notebook and give every code cell its nb2prod role (SPEC section 2).

A role comes from a cell tag ``nb2prod:<role>`` or from a directive on the cell's first line,
``#| nb2prod: <role> [key=value ...]``. Both may be present as long as they agree. Cells are
numbered by their position in the notebook (``nb.cells[i]``, counting from 0, as nbformat and
papermill do), so "cell 3" is the fourth cell, markdown cells included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

import nbformat

from ..errors import NotebookError

TAG_PREFIX = "nb2prod:"
PARAMETERS_TAG = "parameters"
_DIRECTIVE = re.compile(r"^#\|\s*nb2prod\s*:\s*(?P<body>.*?)\s*$")


class Role(StrEnum):
    SETUP = "setup"
    TRAIN = "train"
    MODEL = "model"
    CONTRACT = "contract"
    PREPROCESS = "preprocess"
    PREDICT = "predict"
    POSTPROCESS = "postprocess"
    FALLBACK = "fallback"
    EVALUATE = "evaluate"
    EXAMPLES = "examples"
    SKIP = "skip"


#: Roles whose source is copied into the generated service, in the order of the table in SPEC.
SERVICE_ROLES = frozenset(
    {Role.SETUP, Role.CONTRACT, Role.PREPROCESS, Role.PREDICT, Role.POSTPROCESS, Role.FALLBACK}
)
#: Options a role accepts after its name (``#| nb2prod: model name=clf``).
ROLE_OPTIONS: Mapping[Role, frozenset[str]] = MappingProxyType({Role.MODEL: frozenset({"name"})})
#: Roles a notebook must have before it can become a service (without `contract`, it is inferred).
REQUIRED_ROLES = (Role.MODEL, Role.PREPROCESS, Role.EXAMPLES)


@dataclass(frozen=True)
class Cell:
    """One code cell with its annotation."""

    index: int
    source: str
    role: Role | None = None
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    is_parameters: bool = False

    @property
    def first_line(self) -> str:
        """The first line with code; a role directive is skipped when the role is known."""
        lines = [line.strip() for line in self.source.splitlines() if line.strip()]
        if self.role is not None and lines and _DIRECTIVE.match(lines[0]):
            lines = lines[1:]
        return lines[0] if lines else ""

    @property
    def label(self) -> str:
        """How errors name the cell: its index, role and first line."""
        role = f" ({self.role})" if self.role else ""
        first = self.first_line
        if len(first) > 60:
            first = first[:57] + "..."
        return f"cell {self.index}{role} `{first}`"

    @property
    def goes_into_service(self) -> bool:
        return self.role in SERVICE_ROLES


@dataclass(frozen=True)
class AnnotatedNotebook:
    """A parsed notebook: its path, the raw nbformat node, and the annotated code cells."""

    path: Path
    node: nbformat.NotebookNode
    cells: tuple[Cell, ...]

    def with_role(self, role: Role) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.role is role)

    def has_role(self, role: Role) -> bool:
        return any(c.role is role for c in self.cells)

    @property
    def service_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.goes_into_service)

    @property
    def model_variable(self) -> str:
        """The name of the variable holding the fitted model (``model`` unless ``name=``)."""
        cells = self.with_role(Role.MODEL)
        return cells[0].options.get("name", "model") if cells else "model"


def read_notebook(path: Path) -> AnnotatedNotebook:
    """Read ``path`` and annotate it; raise :class:`NotebookError` naming the cell on any problem."""
    return annotate(load_node(path), path)


def load_node(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path`` as nbformat v4, or :class:`NotebookError` saying why not."""
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such notebook") from None
    except Exception as exc:  # nbformat raises several unrelated types for a corrupt file
        raise NotebookError(
            f"{path}: not a readable Jupyter notebook ({type(exc).__name__}: {exc})"
        ) from None


def annotate(node: nbformat.NotebookNode, path: Path) -> AnnotatedNotebook:
    """Give each code cell of an in-memory notebook its role, without checking completeness."""
    cells = []
    for index, raw in enumerate(node.cells):
        if raw.cell_type != "code":
            continue
        cells.append(annotate_cell(index, raw, path))
    return AnnotatedNotebook(path=path, node=node, cells=tuple(cells))


def require_roles(notebook: AnnotatedNotebook) -> None:
    """Fail unless the notebook has what a service needs: model, preprocess, examples, contract."""
    for role in REQUIRED_ROLES:
        if notebook.has_role(role):
            continue
        hint = _MISSING_ROLE_HINTS[role]
        raise NotebookError(f"{notebook.path}: no cell has the role '{role}'", hint=hint)
    models = notebook.with_role(Role.MODEL)
    if len(models) > 1:
        raise NotebookError(
            f"{notebook.path}: {models[1].label}: a second 'model' cell; "
            f"{models[0].label} already has that role",
            hint="Keep one model cell; fit in 'train' cells and expose the result in one 'model' cell.",
        )


_MISSING_ROLE_HINTS: Mapping[Role, str] = MappingProxyType(
    {
        Role.MODEL: "Mark the cell that leaves the fitted model in `model` with `#| nb2prod: model`.",
        Role.PREPROCESS: "Add a cell `#| nb2prod: preprocess` defining "
        "`def preprocess(inputs: list[Input]) -> features`.",
        Role.EXAMPLES: "Add a cell `#| nb2prod: examples` assigning `examples = [{...}, ...]` "
        "(dicts valid against Input).",
    }
)


def annotate_cell(index: int, raw: nbformat.NotebookNode, path: Path) -> Cell:
    """One code cell with its role; :class:`NotebookError` (with ``cell``) when it is wrong."""
    source = raw.source if isinstance(raw.source, str) else "".join(raw.source)
    tags = list(raw.get("metadata", {}).get("tags", []) or [])
    probe = Cell(index=index, source=source)
    claims: list[tuple[str, str]] = []  # (where, body)
    for tag in tags:
        if isinstance(tag, str) and tag.startswith(TAG_PREFIX):
            claims.append((f"tag '{tag}'", tag[len(TAG_PREFIX) :]))
    first = source.lstrip("\n").split("\n", 1)[0]
    match = _DIRECTIVE.match(first.strip())
    if match:
        claims.append((f"directive '{first.strip()}'", match.group("body")))

    role: Role | None = None
    options: dict[str, str] = {}
    for where, body in claims:
        parsed_role, parsed_options = _parse_claim(body, where, probe, path)
        if role is not None and parsed_role is not role:
            raise NotebookError(
                f"{path}: {probe.label}: two roles, '{role}' and '{parsed_role}' ({where})",
                hint="A cell has one role; split it into two cells.",
                cell=index,
            )
        role = parsed_role
        for key, value in parsed_options.items():
            if options.get(key, value) != value:
                raise NotebookError(
                    f"{path}: {probe.label}: option {key} is both '{options[key]}' and '{value}'",
                    cell=index,
                )
            options[key] = value
    return Cell(
        index=index,
        source=source,
        role=role,
        options=MappingProxyType(options),
        is_parameters=PARAMETERS_TAG in tags,
    )


def _parse_claim(body: str, where: str, cell: Cell, path: Path) -> tuple[Role, dict[str, str]]:
    words = body.split()
    if not words:
        raise NotebookError(
            f"{path}: {cell.label}: {where} names no role",
            hint=f"Roles: {', '.join(r.value for r in Role)}.",
            cell=cell.index,
        )
    name, rest = words[0], words[1:]
    try:
        role = Role(name)
    except ValueError:
        raise NotebookError(
            f"{path}: {cell.label}: unknown role '{name}' in {where}",
            hint=f"Roles: {', '.join(r.value for r in Role)}.",
            cell=cell.index,
        ) from None
    allowed = ROLE_OPTIONS.get(role, frozenset())
    options: dict[str, str] = {}
    for word in rest:
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise NotebookError(
                f"{path}: {cell.label}: '{word}' in {where} is not key=value",
                hint=f"Write for example `#| nb2prod: {role} name=clf`."
                if allowed
                else f"The role '{role}' takes no options.",
                cell=cell.index,
            )
        if key not in allowed:
            raise NotebookError(
                f"{path}: {cell.label}: the role '{role}' has no option '{key}'",
                hint=f"Options of '{role}': {', '.join(sorted(allowed))}."
                if allowed
                else f"The role '{role}' takes no options.",
                cell=cell.index,
            )
        if key == "name" and not value.isidentifier():
            raise NotebookError(
                f"{path}: {cell.label}: name={value} is not a Python variable name", cell=cell.index
            )
        options[key] = value
    return role, options
