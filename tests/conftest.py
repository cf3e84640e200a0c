"""Shared test fixtures: isolation from the user's real state, and in-memory notebooks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "notebooks" / "iris.ipynb"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="rewrite tests/golden from the current output (review the diff before committing)",
    )


# `make test` runs two pytest-xdist workers with ``--dist loadfile``: all tests of a file on one
# worker, so a module's packaged release is made once and a session one (``iris_release``) once
# per worker. Files that share an expensive session fixture share a worker too: the podman files
# build one base image and one iris image. (xdist's own ``xdist_group`` marks cannot do this with
# pytest 9, whose node ids xdist 3.8 can no longer suffix.)
SHARED_WORKER = {
    "tests/e2e/test_container.py": "podman",
    "tests/e2e/test_deploy.py": "podman",
    "tests/e2e/test_registry.py": "podman",
    "tests/e2e/test_corpus.py": "corpus",  # its own venv and eleven notebooks: the other worker
}
LONGEST_FIRST = ("podman", "corpus")  # sent to the workers before everything else


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own; absent without xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile``, with the files of SHARED_WORKER scheduled as one."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFiles(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SHARED_WORKER.get(path, path)

    return SharedFiles(config, log)  # type: ignore[arg-type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker the longest group goes first, then the other end-to-end files, then the
    unit tests, which fill the gaps at the end (``--no-loadscope-reorder`` keeps this order; xdist
    would otherwise send the files with the most tests first). Without xdist nothing changes."""
    if not hasattr(config, "workerinput"):
        return

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        if SHARED_WORKER.get(path) in LONGEST_FIRST:
            return 0
        return 1 if item.get_closest_marker("e2e") is not None else 2

    items.sort(key=rank)  # stable: files keep their order within a rank


@pytest.fixture(scope="session", autouse=True)
def isolated_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """BentoML's store, uv's cache and Jupyter's runtime files live in a temporary directory."""
    home = tmp_path_factory.mktemp("state")
    saved = {k: os.environ.get(k) for k in _ISOLATED}
    os.environ.update(
        {
            "BENTOML_HOME": str(home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "UV_CACHE_DIR": os.environ.get("NB2PROD_TEST_UV_CACHE", str(home / "uv-cache")),
            "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
            "NB2PROD_CACHE_DIR": str(home / "nb2prod-cache"),
        }
    )
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_ISOLATED = (
    "BENTOML_HOME",
    "BENTOML_DO_NOT_TRACK",
    "UV_CACHE_DIR",
    "JUPYTER_RUNTIME_DIR",
    "NB2PROD_CACHE_DIR",
)


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    node = nbformat.v4.new_notebook()
    node.cells = list(cells)
    node.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return node


# The smallest complete notebook: y = 2x with a "model" that is a plain class.
SETUP = "#| nb2prod: setup\nfrom pydantic import BaseModel"
CONTRACT = (
    "#| nb2prod: contract\n"
    "class Input(BaseModel):\n    x: float\n\n"
    "class Output(BaseModel):\n    y: float\n"
)
PREPROCESS = "#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [i.x for i in inputs]"
MODEL = (
    "#| nb2prod: model\n"
    "from sklearn.dummy import DummyRegressor\n"
    "model = DummyRegressor(strategy='constant', constant=2.0).fit([[0.0]], [2.0])"
)
EXAMPLES = '#| nb2prod: examples\nexamples = [{"x": 1.0}, {"x": 3.0}]'


def minimal_cells() -> list[nbformat.NotebookNode]:
    return [code(SETUP), code(CONTRACT), code(PREPROCESS), code(MODEL), code(EXAMPLES)]


def write_notebook(directory: Path, name: str, node: nbformat.NotebookNode) -> Path:
    path = directory / name
    nbformat.write(node, path)
    return path


def copy_iris(directory: Path, config: str | None = None) -> Path:
    """The iris example in ``directory``, with its own config (default: the shipped one)."""
    target = directory / "iris.ipynb"
    shutil.copy(IRIS, target)
    config_text = config if config is not None else (IRIS.parent / "nb2prod.toml").read_text()
    (directory / "nb2prod.toml").write_text(config_text)
    return target


SLOW_START_ENV = "NB2PROD_TEST_SLOW_START_S"


def slow_start(notebook: Path) -> Path:
    """``notebook`` with a setup cell that sleeps ``$NB2PROD_TEST_SLOW_START_S`` seconds where it
    is set: in a served release's worker (the server has the packager's environment), never in
    the kernel (no NB2PROD_* variable reaches it). A test that must act while verify runs sets
    it, so that verify lasts that long however fast the server starts beside the build."""
    import nbformat

    node = nbformat.read(notebook, as_version=4)
    cell = nbformat.v4.new_code_cell(
        "#| nb2prod: setup\nimport os as _os, time as _time\n"
        f"_time.sleep(float(_os.environ.get({SLOW_START_ENV!r}, '0')))\n"
    )
    node.cells.insert(1, cell)
    nbformat.write(node, notebook)
    return notebook


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes, for "nothing changed" assertions."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
