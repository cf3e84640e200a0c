"""Time each `nb2prod package` stage against doing the unavoidable work by hand.

Baseline ("by hand"): `papermill` executing the same notebook, plus `bentoml build` of the same
service project, the two steps nb2prod cannot avoid. Everything else nb2prod does (parse, write,
capture, contract, lock, verify by serving) is its overhead, shown as a ratio.

It also re-packages twice: with nothing changed (the release is up to date: nothing is redone), and
with the release directory removed (execution and lock come from the cache; build and verify run).

What nb2prod does meanwhile is not a stage of its own: the contract probe's random inputs are made
beside the kernel (probe/pregen.py); the leak scan's and the report's imports, which distribution
provides each module and the host's pip settings are found while the kernel runs, and the report's
pictures drawn while the bento is built (pipeline/warm.py); the kernel exits in the background
(adapters/kernel.py); verify's server starts on the files the bento will carry while `bentoml build`
runs (so "verify" is what is left of its start after the build), and is stopped while the last
files are written.

Both sides are measured alike: papermill is imported before either is timed (nb2prod imports it
lazily, the by-hand run in this process), and the notebook runs once untimed first, so that neither
side is the first to start a kernel on this machine (disk cache, kernelspecs).

Run: .venv/bin/python benchmarks/package.py [NOTEBOOK]   (temporary BENTOML_HOME and cache)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Recorder:
    def __init__(self) -> None:
        self.stages: list[tuple[str, float]] = []

    def started(self, stage: str, detail: str) -> None:
        pass

    def finished(self, stage: str, seconds: float, detail: str) -> None:
        self.stages.append((stage, seconds))

    def note(self, message: str) -> None:
        pass

    def update(self, stage: str, detail: str) -> None:
        pass


def main() -> None:
    notebook = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "notebooks" / "iris.ipynb"
    scratch = Path(tempfile.mkdtemp(prefix="nb2prod-bench-"))
    os.environ["BENTOML_HOME"] = str(scratch / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    os.environ["NB2PROD_CACHE_DIR"] = str(scratch / "cache")
    import papermill
    from nb2prod.adapters import bento
    from nb2prod.pipeline.run import PackageRequest, package

    papermill.execute_notebook(  # the warm-up: untimed
        str(notebook), str(scratch / "warm-up.ipynb"), kernel_name="python3",
        cwd=str(notebook.parent), progress_bar=False,
    )  # fmt: skip
    recorder = Recorder()
    start = time.perf_counter()
    result = package(PackageRequest(notebook=notebook, out=scratch / "release"), recorder)
    total = time.perf_counter() - start

    import shutil

    start = time.perf_counter()
    unchanged = package(PackageRequest(notebook=notebook, out=scratch / "release"), Recorder())
    up_to_date_s = time.perf_counter() - start
    assert unchanged.up_to_date
    shutil.rmtree(scratch / "release")
    bento.delete(result.bento_tag)
    start = time.perf_counter()
    again = package(PackageRequest(notebook=notebook, out=scratch / "release"), Recorder())
    cache_hit_s = time.perf_counter() - start

    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook), str(scratch / "by-hand.ipynb"), kernel_name="python3",
        cwd=str(notebook.parent), progress_bar=False,
    )  # fmt: skip
    papermill_s = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(result.release_dir), "-f",
         str(result.release_dir / "service" / "bentofile.yaml")],
        cwd=result.release_dir, check=True, capture_output=True,
    )  # fmt: skip
    build_s = time.perf_counter() - start
    bento.delete(again.bento_tag)

    print(f"nb2prod package {notebook.name}")
    for stage, seconds in recorder.stages:
        print(f"  {stage:<10} {seconds:7.2f} s")
    print(f"  {'total':<10} {total:7.2f} s")
    print("by hand (the unavoidable part)")
    print(f"  {'papermill':<10} {papermill_s:7.2f} s")
    print(f"  {'build':<10} {build_s:7.2f} s")
    print(f"  {'total':<10} {papermill_s + build_s:7.2f} s")
    print(
        f"ratio nb2prod / by hand: {total / (papermill_s + build_s):.2f}x (target <= 2.0x; "
        "every figure measured in this run, on this machine)"
    )
    print("re-package (baseline: the cold run above)")
    print(
        f"  {'unchanged':<10} {up_to_date_s:7.2f} s   {total / up_to_date_s:5.1f}x faster (target < 2 s, >= 5x)"
    )
    print(
        f"  {'cache hit':<10} {cache_hit_s:7.2f} s   {total / cache_hit_s:5.1f}x faster (release removed: build + verify again)"
    )


if __name__ == "__main__":
    main()
