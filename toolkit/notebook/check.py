"""The check rules (``nb2prod check``, and ``package``'s parse stage): static checks of a notebook, no execution (``nb2prod check``).

Finds what breaks a notebook in production before a packaging run: hidden state (names the service
code takes from cells that do not go into the service), wrong shapes, magics, star imports,
out-of-order runs, unseeded randomness, oversized outputs, and credentials. Every finding names the
cell. ``docs/check.md`` lists every code with an example and the fix. The rules read one
:class:`~.dataflow.NotebookAnalysis`; ``package`` hands the same analysis on to ``extract``.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nbformat

from ..adapters.secrets import SecretScanner
from ..errors import NotebookError
from .annotations import (
    REQUIRED_ROLES,
    AnnotatedNotebook,
    Cell,
    Role,
    annotate_cell,
    load_node,
)
from .bounds import UnboundedField, literal_examples, unbounded_fields
from .config import Config, load_config
from .dataflow import (
    Dependency,
    FittedValue,
    NotebookAnalysis,
    ParsedCell,
    analyse,
    role_name,
    single_output_field,
)
from .extract import left_out_imports
from .imports import Unprovided, unprovided

Severity = Literal["error", "warning", "info"]
MAX_OUTPUT_BYTES = 512 * 1024


@dataclass(frozen=True)
class Code:
    severity: Severity
    meaning: str
    hint: str  # what to do about it; a finding may give a more specific one


#: Every finding's code; docs/check.md has an example and the fix for each.
CODES: dict[str, Code] = {
    "NB100": Code("error", "annotation: unknown role, two roles, or a bad option",
                  "Use a role from the table in docs/annotations.md, one per cell; only `model` "
                  "takes an option (`name=`)."),
    "NB101": Code("error", "a role the service needs has no cell",
                  "Mark the cell with `#| nb2prod: <role>` or the tag `nb2prod:<role>`; the "
                  "service needs model, preprocess and examples cells."),
    "NB102": Code("error", "more than one model cell",
                  "Keep one `model` cell that leaves the fitted model; fit in `train` cells."),
    "NB110": Code("error", "syntax error in a cell that goes into the service",
                  "Fix the syntax; this code is copied into the service as it is."),
    "NB200": Code("error", "hidden dependency: code defined only by a cell that is not in the "
                  "service, or a name from a skip cell",
                  "Move the definition or import into a `setup` cell."),
    "NB201": Code("error", "a name the service code uses is never defined",
                  "Define or import it in a `setup` cell."),
    "NB202": Code("info", "fitted state: a value from a train, model or untagged cell that the "
                  "service reads; exported with the model",
                  "Nothing to do: at package time it is stored (skops, joblib or cloudpickle), "
                  "hashed and listed in model/model.json. It must not be training data "
                  "([artifacts] max_rows)."),
    "NB203": Code("error", "fitted state read while the service module is imported",
                  "Read the value inside a function (fitted state is loaded after the import), "
                  "or compute it in a `setup` cell."),
    "NB204": Code("error", "fitted state read from the packager's environment",
                  "Read it where the service runs: call os.environ.get(...) inside preprocess, "
                  "predict or postprocess, so the deployment's own value is used and nothing of "
                  "the packager's environment ships with the model."),
    "NB205": Code("error", "a service cell imports a module no installed distribution provides",
                  "The service installs only locked distributions: move an import the service "
                  "does not use to an untagged or `train` cell; make a module it uses an "
                  "installed package, or copy what it uses into a `setup` cell."),
    "NB210": Code("error", "a function a role needs is missing or takes the wrong parameters",
                  "preprocess(inputs), predict(model, features), postprocess(raw, inputs), "
                  "fallback(inp); extra parameters need defaults."),
    "NB211": Code("error", "Input or Output is missing or not a pydantic model",
                  "Define `class Input(BaseModel)` and `class Output(BaseModel)` in the "
                  "contract cell."),
    "NB212": Code("error", "the model or examples cell does not assign its variable",
                  "Assign `model = ...` (or the `name=` of the model cell) and `examples = [...]`; "
                  "the model object is taken from that variable after the last cell ran."),
    "NB213": Code("error", "no postprocess cell, and Output does not have exactly one field",
                  "Add a `postprocess` cell defining `postprocess(raw, inputs) -> list[Output]`, "
                  "or give Output one field."),
    "NB214": Code("warning", "a numeric Input field without bounds: the contract probe pushes it "
                  "to extremes",
                  "Bound it in the contract cell (`Field(ge=..., le=...)`) to the values the model "
                  "may be asked about; the probe then stays inside them, and so do requests."),
    "NB215": Code("error", "the configuration names a variable or metric the notebook never makes",
                  "Name a variable a cell that runs assigns (docs/configuration.md), or change "
                  "the notebook."),
    "NB300": Code("error", "shell escape or magic in a cell that goes into the service",
                  "Install packages in the environment, not from the notebook; move other "
                  "magics to a `train` or untagged cell."),
    "NB301": Code("warning", "shell escape or magic in a cell that does not go into the service",
                  "Harmless at package time; keep it out of service cells."),
    "NB302": Code("error", "star import in a cell that goes into the service",
                  "Import the names you use (`from numpy import array`)."),
    "NB310": Code("warning", "saved execution counts show cells run out of order",
                  "Restart the kernel and run all cells; package always runs top to bottom."),
    "NB311": Code("warning", "random generator without a seed in a train or model cell",
                  "Pass `random_state=` or a seed, or call `np.random.seed(...)` first."),
    "NB312": Code("warning", "cell outputs over the size limit",
                  "Clear the outputs or print less."),
    "NB400": Code("error", "credential in a cell's source",
                  "Remove it, rotate it (it is in your history), and read it from the "
                  "environment at run time."),
    "NB401": Code("error", "credential in a cell's saved outputs",
                  "Clear the cell's output and rotate the credential."),
}  # fmt: skip
_SKIP_HINT = (
    "Skip cells never run at package time: define it in a cell that runs (a `setup` cell if "
    "the service needs the code)."
)

_FUNCTIONS = {  # role -> (function, number of parameters, their names)
    Role.PREPROCESS: ("preprocess", 1, "inputs"),
    Role.PREDICT: ("predict", 2, "model, features"),
    Role.POSTPROCESS: ("postprocess", 2, "raw, inputs"),
    Role.FALLBACK: ("fallback", 1, "inp"),
}
# estimators and splitters whose results change from run to run without random_state
_NEEDS_RANDOM_STATE = {
    "train_test_split", "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier",
    "ExtraTreesRegressor", "GradientBoostingClassifier", "GradientBoostingRegressor",
    "HistGradientBoostingClassifier", "HistGradientBoostingRegressor", "DecisionTreeClassifier",
    "DecisionTreeRegressor", "BaggingClassifier", "BaggingRegressor", "AdaBoostClassifier",
    "AdaBoostRegressor", "IsolationForest", "KMeans", "MiniBatchKMeans", "MLPClassifier",
    "MLPRegressor", "SGDClassifier", "SGDRegressor", "ShuffleSplit", "StratifiedShuffleSplit",
    "RandomizedSearchCV", "TSNE", "XGBClassifier", "XGBRegressor", "LGBMClassifier",
    "LGBMRegressor",
}  # fmt: skip
_SHUFFLING_SPLITTERS = {"KFold", "StratifiedKFold", "GroupKFold"}
_MUTATORS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__ior__"}


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    cell: int | None = None
    hint: str | None = None  # more specific than the code's own hint
    demoted: bool = False  # a warning, though its code is an error (NB205's left-out import)

    @property
    def severity(self) -> Severity:
        return "warning" if self.demoted else CODES[self.code].severity

    @property
    def fix(self) -> str:
        """What to do about it: the finding's own hint, else its code's."""
        return self.hint or CODES[self.code].hint

    def render(self, path: Path) -> str:
        where = f"cell {self.cell}" if self.cell is not None else "notebook"
        return f"{path}:{where}: {self.severity} {self.code}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.fix,
        }


@dataclass(frozen=True)
class CheckReport:
    path: Path
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def notes(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "info")

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.to_json() for f in self.findings],
        }


def check_path(
    path: Path, scanner: SecretScanner | None = None, config: Config | None = None
) -> CheckReport:
    """Check the notebook at ``path`` (unreadable files raise :class:`NotebookError`)."""
    if path.suffix != ".ipynb":
        raise NotebookError(f"{path}: not a .ipynb notebook")
    return check(load_node(path), path, scanner, config)


def check(
    node: nbformat.NotebookNode,
    path: Path,
    scanner: SecretScanner | None = None,
    config: Config | None = None,
) -> CheckReport:
    """All findings for an in-memory notebook, sorted by cell. ``config``: the notebook's
    configuration; default: the one ``package`` would find for ``path`` (config.py)."""
    notebook, annotation = _annotate(node, path)
    if config is None:
        config = load_config(path).config
    return check_analysis(analyse(notebook), scanner, annotation=annotation, config=config)


def check_analysis(
    analysis: NotebookAnalysis,
    scanner: SecretScanner | None = None,
    *,
    annotation: Sequence[Finding] = (),
    config: Config | None = None,
) -> CheckReport:
    """All findings for an analysed notebook, sorted by cell (``package`` checks the analysis it
    then extracts from). ``annotation``: the NB100 findings met while annotating it;
    ``config``: the configuration the rules about its keys check (none without it)."""
    notebook = analysis.notebook
    findings = list(annotation)
    findings += _roles(notebook)
    for cell in notebook.cells:
        parsed = analysis.cells[cell.index]
        findings += _hygiene(parsed)
        if (syntax := _syntax(parsed)) is not None:
            findings.append(syntax)
    findings += _dataflow(analysis)
    findings += _imports(analysis)
    findings += _shapes(analysis)
    if config is not None:
        findings += _configured(analysis, config)
    findings += _run_order(notebook.node)
    findings += _randomness(notebook, analysis.trees)
    findings += _output_sizes(notebook.node)
    findings += _secrets(notebook.node, scanner)
    order = {code: i for i, code in enumerate(CODES)}
    findings.sort(key=lambda f: (f.cell if f.cell is not None else -1, order[f.code], f.message))
    return CheckReport(path=notebook.path, findings=tuple(_unique(findings)))


def _annotate(node: nbformat.NotebookNode, path: Path) -> tuple[AnnotatedNotebook, list[Finding]]:
    """Every code cell with its role; a cell whose annotation is wrong is an NB100 finding and is
    analysed as an untagged cell."""
    findings: list[Finding] = []
    cells: list[Cell] = []
    for index, raw in enumerate(node.cells):
        if raw.cell_type != "code":
            continue
        try:
            cells.append(annotate_cell(index, raw, path))
        except NotebookError as exc:
            message = _strip_path(exc.message, path).split("`: ", 1)[-1]  # the location is the cell
            findings.append(Finding("NB100", message, exc.cell))
            source = raw.source if isinstance(raw.source, str) else "".join(raw.source)
            cells.append(Cell(index=index, source=source))
    return AnnotatedNotebook(path=path, node=node, cells=tuple(cells)), findings


def _unique(findings: Iterable[Finding]) -> Iterator[Finding]:
    seen = set()
    for finding in findings:
        if finding not in seen:
            seen.add(finding)
            yield finding


def _strip_path(message: str, path: Path) -> str:
    return message.removeprefix(f"{path}: ")


def _roles(notebook: AnnotatedNotebook) -> list[Finding]:
    findings = [
        Finding("NB101", f"no cell has the role '{role}'")
        for role in REQUIRED_ROLES
        if not notebook.has_role(role)
    ]
    for extra in notebook.with_role(Role.MODEL)[1:]:
        findings.append(Finding("NB102", "a second 'model' cell; keep one", extra.index))
    return findings


def _hygiene(parsed: ParsedCell) -> list[Finding]:
    cell = parsed.cell
    code = "NB300" if cell.goes_into_service else "NB301"
    magics = parsed.magics[:1] if parsed.is_cell_magic else parsed.magics
    return [
        Finding(code, f"line {m.number}: `{m.text.strip()[:60]}` is IPython syntax", cell.index)
        for m in magics
    ]


def _syntax(parsed: ParsedCell) -> Finding | None:
    """NB110 for a service cell that is not Python (a cell magic has its own finding)."""
    cell = parsed.cell
    if parsed.tree is not None or not cell.goes_into_service or parsed.is_cell_magic:
        return None
    error = parsed.source_error()
    if error is None:
        return Finding("NB110", "not valid Python", cell.index)
    return Finding("NB110", f"line {error.lineno}: {error.msg}", cell.index)


def _dataflow(analysis: NotebookAnalysis) -> list[Finding]:
    findings = [f for dep in analysis.dependencies if (f := _dependency(dep)) is not None]
    findings += [_fitted(value, analysis.trees.get(value.cell.index)) for value in analysis.fitted]
    findings += _star_imports(analysis)
    return findings


def _dependency(dep: Dependency) -> Finding | None:
    """NB200, NB201 or NB203 for a name the service reads from outside it; None for fitted state."""
    name, origin, cell = dep.name, dep.origin, dep.reader
    if origin is None and dep.skipped is not None:
        message = (
            f"name '{name}' is defined only in cell {dep.skipped.index} (skip), "
            "which never runs at package time"
        )
        return Finding("NB200", message, cell.index, hint=_SKIP_HINT)
    if origin is None:
        return Finding("NB201", f"name '{name}' is never defined", cell.index)
    kind = role_name(origin)
    if dep.kind != "value":
        how = "imported" if dep.kind == "module" else f"a {dep.kind} defined"
        message = (
            f"name '{name}' is {how} only in cell {origin.index} ({kind}), which does not "
            "go into the service"
        )
        hint = (
            f"Move the {'import' if dep.kind == 'module' else 'definition'} of `{name}` "
            f"into a `setup` cell (code travels with the service; only values are exported)."
        )
        return Finding("NB200", message, cell.index, hint=hint)
    if dep.at_import:
        message = (
            f"name '{name}' from cell {origin.index} ({kind}) is read while the service "
            "module is imported (a class body, default argument or decorator); fitted state "
            "is loaded only after that"
        )
        return Finding("NB203", message, cell.index)
    return None


def _fitted(value: FittedValue, tree: ast.Module | None) -> Finding:
    if tree is not None and _from_environment(tree, value.name):
        message = (
            f"cell {value.cell.index} ({value.role}) sets `{value.name}` from the environment, "
            f"read by {value.readers}: the packager's value would ship as fitted state"
        )
        return Finding("NB204", message, value.cell.index)
    message = (
        f"cell {value.cell.index} ({value.role}) defines `{value.name}`, read by "
        f"{value.readers}: exported with the model as fitted state"
    )
    return Finding("NB202", message, value.cell.index)


def _from_environment(tree: ast.Module, name: str) -> bool:
    """True when an assignment to ``name`` reads ``os.environ``/``os.getenv`` (or ``environ`` and
    ``getenv`` imported from os) in its value."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = {
                t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)
            }
            if name in named and node.value is not None and _reads_environment(node.value):
                return True
    return False


def _reads_environment(value: ast.expr) -> bool:
    for node in ast.walk(value):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            return True
        if isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
            return True
    return False


def _star_imports(analysis: NotebookAnalysis) -> list[Finding]:
    return [
        Finding("NB302", "`import *` hides which names the service uses", index)
        for index, tree in analysis.trees.items()
        if analysis.cells[index].cell.goes_into_service
        and any(
            isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
            for node in ast.walk(tree)
        )
    ]


def _imports(analysis: NotebookAnalysis) -> list[Finding]:
    """NB205: a service cell imports a top-level module no installed distribution provides
    (the lock would stop on it after the whole notebook ran). A warning when every statement
    importing it is one the service leaves out (``extract.left_out_imports``)."""
    left_out = {(s.cell, s.line) for s in left_out_imports(analysis)}
    statements: dict[tuple[int, str], tuple[int, set[str]]] = {}  # (cell, module) -> line, names
    kept: set[tuple[int, str]] = set()  # (cell, module) imported by a statement the service keeps
    for cell in analysis.notebook.service_cells:
        tree = analysis.trees.get(cell.index)
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                bound = [
                    (a.name.split(".")[0], a.asname or a.name.split(".")[0]) for a in node.names
                ]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                bound = [(top, a.asname or a.name) for a in node.names]
            else:
                continue
            for module, name in bound:
                line, names = statements.setdefault((cell.index, module), (node.lineno, set()))
                names.add(name)
                if (cell.index, node.lineno) not in left_out:
                    kept.add((cell.index, module))
    if not statements:
        return []
    directory = analysis.notebook.path.resolve().parent
    missing = {u.module: u for u in unprovided({m for _, m in statements}, directory)}
    findings = []
    for (index, module), (line, names) in statements.items():
        if module in missing:
            if (index, module) not in kept:
                findings.append(_left_out(missing[module], directory, index, line))
                continue
            used = sorted(names & analysis.service_reads)
            findings.append(_unprovided(missing[module], directory, index, line, used))
    return findings


def _left_out(found: Unprovided, directory: Path, cell: int, line: int) -> Finding:
    message = (
        f"line {line}: {found.describe(directory)}; the service code never uses what this "
        "cell imports from it, so the import is left out of the service"
    )
    hint = (
        f"Nothing to do: the notebook's cells still import `{found.module}` when they run at "
        "package time, and the service's copy of this cell has the import commented out. To "
        "keep the service code as the notebook has it, move the import to an untagged or "
        "`train` cell."
    )
    return Finding("NB205", message, cell, hint=hint, demoted=True)


def _unprovided(
    found: Unprovided, directory: Path, cell: int, line: int, used: list[str]
) -> Finding:
    consequence = (
        "the notebook cannot run" if found.whence == "missing" else "the service would not have it"
    )
    message = f"line {line}: {found.describe(directory)}; {consequence}"
    module = found.module
    if not used:
        hint = (
            f"The service code never uses what this cell imports from `{module}`: move the "
            "import to an untagged or `train` cell (they run at package time but do not go "
            "into the service)."
        )
    elif found.whence == "missing":
        hint = (
            f"Install the package that provides `{module}` in the environment nb2prod runs in "
            "(the notebook's kernel runs there too), or remove the import."
        )
    else:
        names = ", ".join(f"`{n}`" for n in used)
        what = f"`{module}`" if used == [module] else f"{names} from `{module}`"
        hint = (
            f"The service code uses {what}: make it an installed package (a "
            "pyproject.toml beside it and `pip install -e .`; the lock then pins it like any "
            "other), or copy what the service uses into a `setup` cell."
        )
    return Finding("NB205", message, cell, hint=hint)


def _shapes(analysis: NotebookAnalysis) -> list[Finding]:
    """What each role must provide: its function, the contract's classes, its variable."""
    notebook, trees = analysis.notebook, analysis.trees
    findings = _functions(notebook, trees)
    if any(c.index in trees for c in notebook.with_role(Role.CONTRACT)):
        findings += _contract(analysis)
    findings += _variables(analysis)
    return findings


def _functions(notebook: AnnotatedNotebook, trees: dict[int, ast.Module]) -> list[Finding]:
    """NB210: each function a role needs is defined and takes its parameters."""
    findings: list[Finding] = []
    for role, (name, count, params) in _FUNCTIONS.items():
        cells = [c for c in notebook.with_role(role) if c.index in trees]
        if not cells:
            continue
        defs = [
            node
            for c in cells
            for node in trees[c.index].body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        ]
        if not defs:
            findings.append(
                Finding("NB210", f"the {role} cell defines no `{name}({params})`", cells[0].index)
            )
        elif not _takes(defs[-1].args, count):
            where = next(c.index for c in cells if defs[-1] in trees[c.index].body)
            findings.append(
                Finding("NB210", f"`{name}` must take {count} parameter(s) ({params})", where)
            )
    return findings


def _contract(analysis: NotebookAnalysis) -> list[Finding]:
    """NB211: Input and Output are pydantic models; NB213: without postprocess, Output has one
    field."""
    notebook, trees = analysis.notebook, analysis.trees
    contract = next(c for c in notebook.with_role(Role.CONTRACT) if c.index in trees)
    classes = {
        node.name: (c.index, node)
        for c in notebook.service_cells
        if c.index in trees
        for node in trees[c.index].body
        if isinstance(node, ast.ClassDef)
    }
    findings = []
    for name in ("Input", "Output"):
        if name not in classes:
            findings.append(
                Finding("NB211", f"the contract defines no class `{name}`", contract.index)
            )
        elif not _is_pydantic(name, classes):
            findings.append(
                Finding("NB211", f"`{name}` is not a pydantic BaseModel", classes[name][0])
            )
    if not notebook.has_role(Role.POSTPROCESS) and "Output" in classes:
        try:
            single_output_field(analysis)
        except NotebookError as exc:
            findings.append(_output_fields(exc, notebook))
    if "Input" in classes and _is_pydantic("Input", classes):
        index, node = classes["Input"]
        nodes = {name: n for name, (_, n) in classes.items()}
        examples = next(
            (
                rows
                for c in reversed(notebook.with_role(Role.EXAMPLES))
                if c.index in trees and (rows := literal_examples(trees[c.index])) is not None
            ),
            None,
        )
        findings += [_unbounded(f, index) for f in unbounded_fields(node, nodes, examples)]
    return findings


def _unbounded(field: UnboundedField, cell: int) -> Finding:
    message = (
        f"line {field.line}: Input field `{field.name}` ({field.kind}) has {field.missing}: the "
        "contract probe will send it extreme values (negative, zero, huge), and the robustness "
        "gate fails if the pipeline cannot answer them"
    )
    how = (
        f"add `{field.suggestion()}` to its `Field(...)`"
        if field.has_field
        else f"`{field.declaration()}`"
    )
    source = (
        f" (the examples range from {min(field.examples):g} to {max(field.examples):g}; "
        "widened, adjust to what the model may be asked)"
        if field.examples
        else ""
    )
    hint = (
        f"Bound it in the contract cell: {how}{source}. Requests outside the bounds then get "
        "a 400 naming the field, and the probe stays inside them."
    )
    return Finding("NB214", message, cell, hint=hint)


def _output_fields(exc: NotebookError, notebook: AnnotatedNotebook) -> Finding:
    if exc.cell is None:  # Output is defined, but in no contract cell
        return Finding("NB213", _strip_path(exc.message, notebook.path), hint=exc.hint)
    label = next(c.label for c in notebook.cells if c.index == exc.cell)
    message = _strip_path(exc.message, notebook.path).removeprefix(f"{label}: ")
    return Finding("NB213", message, exc.cell)


def _variables(analysis: NotebookAnalysis) -> list[Finding]:
    """NB212: the model and examples cells assign their variables."""
    notebook, trees = analysis.notebook, analysis.trees
    findings = []
    for role, variable in ((Role.MODEL, notebook.model_variable), (Role.EXAMPLES, "examples")):
        cells = [c for c in notebook.with_role(role) if c.index in trees]
        if not cells or any(variable in _assigned(trees[c.index]) for c in cells):
            continue
        message = f"the {role} cell does not assign `{variable}`"
        elsewhere = [
            c
            for c in notebook.cells
            if c.index in trees and c.role is not role and variable in _assigned(trees[c.index])
        ]
        hint = None
        if role is Role.MODEL and elsewhere:
            maker = elsewhere[-1]
            message += (
                f"; cell {maker.index} ({role_name(maker)}) does. nb2prod takes the model "
                f"object from `{variable}` after the last cell ran, and the cell that makes "
                "it must be the model cell"
            )
            hint = (
                f"Mark cell {maker.index} `#| nb2prod: model` instead of cell {cells[0].index} "
                "(train cells after it may go on fitting the object, as a training loop does: "
                f"it is taken after the last cell ran), or assign `{variable} = ...` in the "
                "model cell."
            )
        findings.append(Finding("NB212", message, cells[0].index, hint=hint))
    return findings


def _configured(analysis: NotebookAnalysis, config: Config) -> list[Finding]:
    """NB215: what the configuration names that no cell makes, decided without running."""
    evaluation = config.evaluation
    findings = []
    configured = [k for k in ("eval_x", "eval_y") if k in evaluation.model_fields_set]
    bound = analysis.bound_by_running_cells() if configured else frozenset()
    for key in configured:
        name = getattr(evaluation, key)
        if name not in bound:
            message = (
                f"[evaluation] {key} = {name!r}, but no cell that runs at package time assigns "
                f"`{name}`: the report would have no held-out evaluation"
            )
            findings.append(Finding("NB215", message, hint=_near(name, bound, key)))
    fields = _output_field_names(analysis)
    if evaluation.output_field is not None and fields and evaluation.output_field not in fields:
        message = (
            f"[evaluation] output_field = {evaluation.output_field!r} is not a field of Output "
            f"({', '.join(fields)})"
        )
        hint = "Set it to the Output field the labels in eval_y are compared with."
        findings.append(Finding("NB215", message, hint=hint))
    wanted = [(f"[gates] {m}", m) for m in config.gates if m != "robustness"]
    wanted += [(f"[evaluation] max_regression {m}", m) for m in evaluation.max_regression]
    keys = _metric_keys(analysis) if wanted else None
    for where, metric in wanted:
        if keys is None or metric in keys:
            continue
        produced = ", ".join(sorted(keys)) or "none: no cell assigns `metrics`"
        message = f"{where}: no cell makes the metric '{metric}' (metrics: {produced})"
        hint = (
            "Gate on a key of the `metrics` dict an `evaluate` cell assigns, or add the metric "
            "to it."
        )
        findings.append(Finding("NB215", message, hint=hint))
    return findings


def _near(name: str, bound: frozenset[str], key: str) -> str:
    close = difflib.get_close_matches(name, sorted(bound), n=1)
    also = f" (did you mean `{close[0]}`?)" if close else ""
    return f"Set [evaluation] {key} to a variable the notebook assigns{also}, or assign `{name}`."


def _output_field_names(analysis: NotebookAnalysis) -> list[str]:
    for cell in analysis.notebook.with_role(Role.CONTRACT):
        tree = analysis.trees.get(cell.index)
        for node in tree.body if tree is not None else ():
            if isinstance(node, ast.ClassDef) and node.name == "Output":
                return [
                    stmt.target.id
                    for stmt in node.body
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                ]
    return []


def _metric_keys(analysis: NotebookAnalysis) -> set[str] | None:
    """The keys of ``metrics`` when they are known statically: every cell that binds it assigns a
    dict display with string keys and nothing else touches it (the last one counts); an empty
    set when no cell binds it; None when it cannot be known without running."""
    keys: set[str] = set()
    for tree in analysis.trees.values():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Name) and node.id == "metrics"):
                continue
            if isinstance(node.ctx, ast.Store | ast.Del):
                assigned = next(
                    (
                        s.value
                        for s in tree.body
                        if isinstance(s, ast.Assign) and s.targets == [node]
                    ),
                    None,
                )
                if not isinstance(assigned, ast.Dict) or not all(
                    isinstance(k, ast.Constant) and isinstance(k.value, str) for k in assigned.keys
                ):
                    return None
                keys = {
                    k.value
                    for k in assigned.keys
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)
                }
            elif _mutated(tree, node):
                return None
    return keys


def _mutated(tree: ast.Module, name: ast.Name) -> bool:
    """Whether a read of ``metrics`` may change it: ``metrics[...] = ``, ``metrics.update(...)``,
    ``metrics |= ...`` or passing it to a function."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and node.value is name:
            return True
        if isinstance(node, ast.Attribute) and node.value is name and node.attr in _MUTATORS:
            return True
        if isinstance(node, ast.Call) and name in node.args:
            return True
        if isinstance(node, ast.AugAssign) and node.target is name:
            return True
    return False


def _takes(args: ast.arguments, count: int) -> bool:
    positional = args.posonlyargs + args.args
    required = len(positional) - len(args.defaults)
    return required <= count and (len(positional) >= count or args.vararg is not None)


def _is_pydantic(name: str, classes: dict[str, tuple[int, ast.ClassDef]], depth: int = 0) -> bool:
    if depth > 10 or name not in classes:
        return False
    for base in classes[name][1].bases:
        base_name = ast.unparse(base)
        if base_name.split(".")[-1] in ("BaseModel", "RootModel"):
            return True
        if _is_pydantic(base_name, classes, depth + 1):
            return True
    return False


def _assigned(tree: ast.Module) -> set[str]:
    """The names a cell assigns at module level, inside if/for/while/with/try blocks too (not
    inside functions or classes)."""
    names = set()
    for node in _module_level(tree.body):
        if isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith):
            targets = (
                [node.target]
                if isinstance(node, ast.For | ast.AsyncFor)
                else [i.optional_vars for i in node.items if i.optional_vars is not None]
            )
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            continue
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign | ast.AugAssign)
            else []
        )
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def _module_level(statements: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Each statement that runs at module level, compound statements' bodies included."""
    for node in statements:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for field in ("body", "orelse", "finalbody"):
            nested = getattr(node, field, None)
            if isinstance(nested, list):
                yield from _module_level([n for n in nested if isinstance(n, ast.stmt)])
        for handler in getattr(node, "handlers", []):
            yield from _module_level(handler.body)


def _run_order(node: nbformat.NotebookNode) -> list[Finding]:
    last: tuple[int, int] | None = None  # (cell index, execution count)
    for index, cell in enumerate(node.cells):
        count = cell.get("execution_count") if cell.cell_type == "code" else None
        if count is None:
            continue
        if last is not None and count <= last[1]:
            message = (
                f"ran before cell {last[0]} (execution counts {count} and {last[1]}); the saved "
                "outputs come from an out-of-order run, while package runs top to bottom"
            )
            return [Finding("NB310", message, index)]
        last = (index, count)
    return []


def _randomness(notebook: AnnotatedNotebook, trees: dict[int, ast.Module]) -> list[Finding]:
    """NB311: a random generator without a seed in a train or model cell."""
    seeded = {
        ast.unparse(call.func).split(".")[0]
        for tree in trees.values()
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and ast.unparse(call.func).endswith(".seed")
    }
    findings = []
    for cell in notebook.cells:
        if cell.role not in (Role.TRAIN, Role.MODEL) or cell.index not in trees:
            continue
        for call in ast.walk(trees[cell.index]):
            if isinstance(call, ast.Call) and (problem := _unseeded(call, seeded)):
                findings.append(Finding("NB311", f"{problem}; runs will differ", cell.index))
    return findings


_RANDOM_MODULE_CALL = re.compile(r"^(np|numpy)\.random\.\w+$|^random\.\w+$")


def _unseeded(call: ast.Call, seeded: set[str]) -> str | None:
    """What makes this call's result differ from run to run, if anything."""
    func = ast.unparse(call.func)
    leaf = func.split(".")[-1]
    keywords = {k.arg: k.value for k in call.keywords}
    if leaf in _NEEDS_RANDOM_STATE and "random_state" not in keywords:
        return f"`{leaf}(...)` without random_state"
    if (
        leaf in _SHUFFLING_SPLITTERS
        and _true(keywords.get("shuffle"))
        and ("random_state" not in keywords)
    ):
        return f"`{leaf}(shuffle=True)` without random_state"
    if func.endswith("random.default_rng") and not call.args and "seed" not in keywords:
        return "`default_rng()` without a seed"
    if (
        leaf in ("Random", "RandomState")
        and _RANDOM_MODULE_CALL.match(func)
        and not call.args
        and not keywords
    ):
        return f"`{func}()` without a seed"
    if (
        _RANDOM_MODULE_CALL.match(func)
        and leaf not in ("seed", "default_rng", "RandomState", "Random", "Generator")
        and func.split(".")[0] not in seeded
    ):
        return f"`{func}(...)` with no `{func.rsplit('.', 1)[0]}.seed(...)` anywhere"
    return None


def _true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _output_sizes(node: nbformat.NotebookNode) -> list[Finding]:
    findings = []
    for index, cell in enumerate(node.cells):
        size = len(json.dumps(cell.get("outputs", [])))
        if size > MAX_OUTPUT_BYTES:
            message = (
                f"outputs are {size // 1024} KiB (limit {MAX_OUTPUT_BYTES // 1024} KiB); "
                "clear them or print less, they bloat every diff and release"
            )
            findings.append(Finding("NB312", message, index))
    return findings


def _output_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(_join(output["text"]))
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/") or mime == "application/json":
                parts.append(_join(value) if not isinstance(value, dict) else json.dumps(value))
        if output.get("output_type") == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
    return "\n".join(parts)


def _join(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _secrets(node: nbformat.NotebookNode, scanner: SecretScanner | None) -> list[Finding]:
    if scanner is None:
        with SecretScanner() as own:
            return _secrets(node, own)
    findings = []
    for index, cell in enumerate(node.cells):
        source = _join(cell.source)
        for hit in scanner.scan(source):
            message = f"line {hit.line}: credential found ({hit.kind}); remove it and rotate it"
            findings.append(Finding("NB400", message, index))
        if cell.cell_type == "code":
            for hit in scanner.scan(_output_text(cell)):
                message = f"credential found in the saved output ({hit.kind}); clear the output"
                findings.append(Finding("NB401", message, index))
    return findings
