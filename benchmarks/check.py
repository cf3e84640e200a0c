"""Time `nb2prod check` on a generated 200-cell notebook (target: under 1 s on our 2-core machines).

Baseline: reading the same notebook with nbformat, the part no checker can avoid. Prints both and
the ratio. Run: .venv/bin/python benchmarks/check.py [CELLS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.notebooks.make_check_fixtures import base  # noqa: E402


def generated(cells: int) -> nbformat.NotebookNode:
    sources = base()
    for i in range(cells - len(sources)):
        if i % 5 == 0:
            sources.append(f"#| nb2prod: skip\ndf_{i} = data.describe()\ndf_{i}.plot()")
        else:
            sources.append(
                f"#| nb2prod: train\nfeature_{i} = [x * {i} for x in range(100)]\n"
                f"def helper_{i}(v, k={i}):\n    total = sum(feature_{i})\n    return v + k + total\n"
                f"result_{i} = helper_{i}(len(feature_{i}))"
            )
    node = new_notebook(cells=[new_code_cell(s) for s in sources])
    node.cells.insert(0, new_markdown_cell("# generated for benchmarks/check.py"))
    return node


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    path = Path(tempfile.mkdtemp()) / "big.ipynb"
    nbformat.write(generated(count), path)
    from nb2prod.adapters.secrets import SecretScanner
    from nb2prod.notebook.check import check_path

    start = time.perf_counter()
    nbformat.read(path, as_version=4)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    with SecretScanner() as scanner:
        report = check_path(path, scanner)
    check_s = time.perf_counter() - start
    print(f"notebook: {count} code cells, {len(report.findings)} findings")
    print(f"  nbformat.read (baseline) {read_s * 1000:8.1f} ms")
    print(f"  nb2prod check            {check_s * 1000:8.1f} ms   (target < 1000 ms)")
    print(f"  ratio check / read       {check_s / read_s:8.1f}x")


if __name__ == "__main__":
    main()
