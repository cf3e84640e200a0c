"""The kernel's output goes to a log, not to the packager's console (a real kernel, real workers)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nb2prod.adapters.kernel import run_notebook
from nb2prod.pipeline.execute import execute_notebook, kernel_environment
from nb2prod.pipeline.kernellog import last_log_path
from nb2prod.pipeline.parse import parse

from tests.conftest import code, minimal_cells, notebook, write_notebook
from tests.e2e.conftest import nb2prod

pytestmark = pytest.mark.e2e

# prints in the kernel, in joblib's loky workers (their stdout is the kernel's file descriptor 1,
# not the notebook's) and in a subprocess; then it sleeps past a second so that even a CI log
# shows the cell, and writes a file beside the notebook
NOISY = """\
import os, subprocess, sys, time
from joblib import Parallel, delayed
for i in range(3000):
    print("training line", i)
def fit(task):
    for i in range(500):
        print("worker", task, "iteration", i, flush=True)
    return task
Parallel(n_jobs=2, backend="loky")(delayed(fit)(t) for t in range(4))
os.write(2, b"below python\\n")
subprocess.run([sys.executable, "-c", "print('from a subprocess')"], check=True)
time.sleep(1.2)
open("submission.csv", "w").write("id,label\\n")
"""


def test_the_log_holds_each_line_of_the_kernel_and_its_workers_once_and_nothing_reaches_us(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    node = notebook(code("print('hello from cell 0')"), code(NOISY))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    log = scratch / "kernel.log"
    seen: list[tuple[int, int, bool]] = []

    def on_cell(k: int, n: int, cell: nbformat.NotebookNode | None) -> str:
        seen.append((k, n, cell is not None))
        return f"header {k} of {n}"

    failure = run_notebook(
        node, output_path=scratch / "out.ipynb", cwd=tmp_path, parameters={}, scratch=scratch,
        log_path=log, env=kernel_environment(os.environ), on_cell=on_cell,
    )  # fmt: skip
    assert failure is None
    assert seen == [(1, 2, True), (1, 2, False), (2, 2, True), (2, 2, False)]
    text = log.read_text()
    first, second = text.split("──── header 1 of 2\n")[1].split("──── header 2 of 2\n")
    assert "hello from cell 0" in first
    for line in [
        "training line 2999",
        "worker 3 iteration 499",
        "below python",
        "from a subprocess",
    ]:
        assert second.count(line + "\n") == 1, line
    assert len(re.findall(r"^worker \d iteration \d+$", second, re.M)) == 2000
    # the Python-level prints stay in the executed notebook, as in Jupyter
    executed = nbformat.read(scratch / "out.ipynb", as_version=4)
    assert "training line 2999" in "".join(o.get("text", "") for o in executed.cells[1].outputs)
    out, err = capfd.readouterr()
    assert "worker" not in out + err and "training line" not in out + err
    assert "from a subprocess" not in out + err and "below python" not in out + err


def test_package_shows_the_cells_not_their_output_and_a_failure_keeps_the_log(
    tmp_path: Path,
) -> None:
    cells = minimal_cells()
    cells[1:1] = [
        code(NOISY),
        code("print('about to fail')\nraise ValueError('labels are missing')"),
    ]
    path = write_notebook(tmp_path, "noisy.ipynb", notebook(*cells))
    (tmp_path / "nb2prod.toml").write_text('name = "noisy"\nversion = "1.0.0"\n')
    run = nb2prod("package", path, cwd=tmp_path)
    assert run.code == 1, run.stdout + run.stderr
    error = run.stderr[run.stderr.index("error:") :]
    console = run.stdout + run.stderr.replace(error, "")  # all but the error
    # the progress: the slow cell, by its place, index and first line (not a CI log per line)
    assert "[2/8] cell 1 `import os, subprocess, sys, time`" in run.stdout
    assert "training line" not in console and "worker " not in console
    assert "from a subprocess" not in console and "below python" not in console
    assert "the notebook wrote submission.csv beside it while running" in run.stdout
    # the error: the cell, then the kernel's last lines, then where the whole log is
    assert "cell 2 (untagged) `print('about to fail')` raised ValueError" in error
    tail = error.split("the kernel's last output:\n")[1].split("hint:")[0].splitlines()
    assert 2 <= len(tail) <= 20 and "  | about to fail" in tail
    log = Path(re.findall(r"is in (\S+kernel\.log)", run.stderr)[0])
    notebook_kept = Path(run.stderr.split("is at ")[1].split()[0])
    assert log.parent == notebook_kept.parent and notebook_kept.is_file()
    text = log.read_text()
    assert "training line 2999\n" in text and "worker 3 iteration 499\n" in text
    assert "from a subprocess" in text and "about to fail" in text


def test_a_kernel_that_dies_is_named_with_its_cell_and_its_last_words(tmp_path: Path) -> None:
    crash = "import ctypes, faulthandler\nfaulthandler.enable()\nctypes.string_at(0)"
    cells = minimal_cells()
    cells.insert(1, code(crash))
    path = write_notebook(tmp_path, "crash.ipynb", notebook(*cells))
    (tmp_path / "nb2prod.toml").write_text('name = "crash"\nversion = "1.0.0"\n')
    run = nb2prod("package", path, cwd=tmp_path)
    assert run.code == 1 and "Traceback" not in run.stderr, run.stderr
    error = run.stderr[run.stderr.index("error:") :]
    assert "cell 1 (untagged) `import ctypes, faulthandler` raised DeadKernelError" in error
    assert "Kernel died" not in run.stdout + run.stderr.replace(error, "")
    # faulthandler wrote below Python, to the kernel's stderr: the log, shown with the error
    tail = error.split("the kernel's last output:\n")[1].split("hint:")[0]
    assert "  | [papermill] Kernel died while waiting for execute reply." in tail
    log = Path(re.findall(r"is in (\S+kernel\.log)", error)[0]).read_text()
    assert "Fatal Python error: Segmentation fault" in log


class Recorder:
    """A Progress that keeps what it was told."""

    def __init__(self) -> None:
        self.updates: list[str] = []
        self.notes: list[str] = []

    def started(self, stage: str, detail: str) -> None:
        pass

    def finished(self, stage: str, seconds: float, detail: str) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)

    def update(self, stage: str, detail: str) -> None:
        assert stage == "execute"
        self.updates.append(detail)


def test_a_successful_execute_reports_each_cell_and_keeps_its_last_log(tmp_path: Path) -> None:
    cells = minimal_cells()
    cells.insert(1, code("print('first run')\nopen('model.txt', 'w').write('trees')"))
    work = tmp_path / "work"  # the scratch directories are not beside the notebook
    work.mkdir()
    path = write_notebook(work, "ok.ipynb", notebook(*cells))
    (work / "nb2prod.toml").write_text('name = "ok"\nversion = "1.0.0"\n')
    progress = Recorder()
    parsed = parse(path, None, {}, progress)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    execute_notebook(parsed, {}, scratch, progress)
    started = [u for u in progress.updates if u]
    assert started[0] == "[1/7] cell 0 (setup) `from pydantic import BaseModel`"
    assert started[1] == "[2/7] cell 1 `print('first run')`"
    assert started[-1].startswith("[7/7] nb2prod's probe")
    assert progress.updates.count("") == 7  # each cell's end
    assert "the notebook wrote model.txt beside it while running (not part of the release)" in (
        progress.notes
    )
    log = last_log_path(path)
    assert f"the kernel's output (prints, warnings, workers) is in {log}" in progress.notes
    assert "first run" in log.read_text()


def test_with_stopping_the_kernel_exits_gracefully_in_the_background_and_is_gone_at_the_end(
    tmp_path: Path,
) -> None:
    """The kernel's shutdown (its atexit handlers: here one second and a file) is not waited for
    by run_notebook, only by the Stopping around it, as package uses it."""
    import psutil
    from nb2prod.adapters.children import Stopping

    exited = tmp_path / "atexit.txt"
    slow_exit = (
        "import atexit, os, time\n"
        "print(os.getpid())\n"
        f"atexit.register(lambda: (time.sleep(1.0), open({str(exited)!r}, 'w').write('bye')))\n"
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with Stopping() as stopping:
        failure = run_notebook(
            notebook(code(slow_exit)), output_path=scratch / "out.ipynb", cwd=tmp_path,
            parameters={}, scratch=scratch, env=kernel_environment(os.environ), stopping=stopping,
        )  # fmt: skip
        assert failure is None
        executed = nbformat.read(scratch / "out.ipynb", as_version=4)
        pid = int(executed.cells[0].outputs[0]["text"].strip())
        assert not exited.exists()  # still shutting down: run_notebook did not wait
        assert psutil.pid_exists(pid)
    assert exited.read_text() == "bye"  # shut down gracefully: its atexit handlers ran
    assert not psutil.pid_exists(pid)
