"""What package does sooner or once to take less time, with the same results: the contract
probe's random inputs made beside the kernel, skops imported without torch, distributions' metadata
read once, the later stages' imports done while the kernel runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import psutil
import pytest
from nb2prod.adapters.children import Stopping
from nb2prod.pipeline import packages
from nb2prod.pipeline.pregen import MODULE, pregenerating
from nb2prod.pipeline.warm import Warmup
from nb2prod.probe import environment, pregen
from nb2prod.probe.protocol import InferPlan, ProbePlan, RobustnessPlan

from .test_probe import PIPELINE
from .test_probe import plan as probe_plan

SCHEMA = {
    "properties": {"x": {"title": "X", "type": "number"}},
    "required": ["x"],
    "title": "Input",
    "type": "object",
}


def plan(tmp_path: Path, pipeline: str = PIPELINE, **changes: Any) -> ProbePlan:
    return probe_plan(tmp_path, pipeline=pipeline, robustness=RobustnessPlan(inputs=25), **changes)


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's view in a kernel whose notebook never imported hypothesis (pytest's plugin
    has imported it here)."""
    monkeypatch.setattr(pregen, "hypothesis_imported", lambda: False)


def pregen_processes() -> list[psutil.Process]:
    """This test's processes making inputs that still run (an exited one not yet reaped is not)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and MODULE in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


# what the kernel does: the probe's modules loaded, pipeline.py loaded, then the contract probe
KERNEL = """
import json, sys
from nb2prod.probe import lineage, pregen, run, snapshot
from nb2prod.probe.kernel import load_pipeline
from nb2prod.probe.protocol import ProbePlan
from nb2prod.probe.robustness import random_inputs
plan = ProbePlan.model_validate_json(open(sys.argv[1]).read())
pipeline, _ = load_pipeline(plan, None)
schema = pipeline.Input.model_json_schema()
taken = pregen.take(plan.pregenerated, schema, plan.robustness.inputs, plan.robustness.seed)
print(json.dumps([taken, random_inputs(schema, plan.robustness.inputs, plan.robustness.seed)]))
"""


def test_inputs_made_beside_the_kernel_are_those_the_kernel_would_make(tmp_path: Path) -> None:
    with pregenerating(plan(tmp_path), tmp_path, cwd=tmp_path, env=os.environ) as planned:
        plan_file = tmp_path / "kernel-plan.json"
        plan_file.write_text(planned.model_dump_json())
        kernel = subprocess.run([sys.executable, "-c", KERNEL, str(plan_file)], cwd=tmp_path,
                                capture_output=True, text=True, check=True)  # fmt: skip
        assert not pregen_processes()  # take() waited for it
    taken, made_here = json.loads(kernel.stdout)
    assert isinstance(taken, list) and len(taken) == 25
    assert taken == made_here


def test_inputs_made_for_another_schema_count_seed_or_constants_are_not_used(
    tmp_path: Path, fresh_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pregenerating(plan(tmp_path), tmp_path, cwd=tmp_path, env=os.environ) as planned:
        where = planned.pregenerated
        assert where is not None
        assert pregen.take(where, SCHEMA, 25, 0) is None  # this process loaded other modules
        made = json.loads(Path(where.file).read_text())
        monkeypatch.setattr(pregen, "constants_digest", lambda: made["constants"])
        assert pregen.take(where, SCHEMA, 25, 0) == made["made"]
        other = {**SCHEMA, "properties": {"x": {"title": "X", "type": "integer"}}}
        assert pregen.take(where, other, 25, 0) is None
        assert pregen.take(where, SCHEMA, 26, 0) is None
        assert pregen.take(where, SCHEMA, 25, 1) is None
        monkeypatch.setattr(pregen, "hypothesis_imported", lambda: True)
        assert pregen.take(where, SCHEMA, 25, 0) is None  # the notebook's hypothesis settings


def test_a_pipeline_that_fails_alone_leaves_the_inputs_to_the_probe(
    tmp_path: Path, fresh_process: None
) -> None:
    failing = PIPELINE.replace("import numpy as np", "import numpy as np\nraise ValueError('no')")
    with pregenerating(plan(tmp_path, failing), tmp_path, cwd=tmp_path, env=os.environ) as planned:
        assert pregen.take(planned.pregenerated, SCHEMA, 25, 0) is None
    assert not (tmp_path / "random-inputs.json").exists()


def test_a_failed_execute_stops_the_process_making_inputs(tmp_path: Path) -> None:
    slow = PIPELINE.replace("import numpy as np", "import numpy as np\nimport time\ntime.sleep(60)")
    started = time.monotonic()
    with (
        pytest.raises(RuntimeError, match="the kernel failed"),
        pregenerating(plan(tmp_path, slow), tmp_path, cwd=tmp_path, env=os.environ),
    ):
        deadline = time.monotonic() + 30
        while not pregen_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pregen_processes()
        raise RuntimeError("the kernel failed")
    assert not pregen_processes() and time.monotonic() - started < 30


def test_the_process_making_inputs_keeps_its_temporary_files_in_the_runs_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed when execute fails, it cannot remove them: the run's scratch directory (tempfile's
    directory during a run) is removed instead, nothing is left in the user's TMPDIR."""
    scratch, outside = tmp_path / "scratch", tmp_path / "tmp"
    scratch.mkdir()
    outside.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    slow = PIPELINE.replace("import numpy as np", "import numpy as np\nimport time\ntime.sleep(60)")
    env = {**os.environ, "TMPDIR": str(outside)}
    with pregenerating(plan(tmp_path, slow), tmp_path, cwd=tmp_path, env=env):
        deadline = time.monotonic() + 30
        while not pregen_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = pregen_processes()
        assert child.environ()["TMPDIR"] == str(scratch)


def test_an_inferred_contract_or_no_random_inputs_is_not_made_beforehand(tmp_path: Path) -> None:
    inferred = plan(tmp_path, infer=InferPlan(training_data=None, margin=0.1, max_categories=20))
    with pregenerating(inferred, tmp_path, cwd=tmp_path, env=os.environ) as planned:
        assert planned is inferred and not pregen_processes()
    none = probe_plan(tmp_path, robustness=RobustnessPlan(inputs=0))
    with pregenerating(none, tmp_path, cwd=tmp_path, env=os.environ) as planned:
        assert planned is none and not pregen_processes()


@pytest.mark.skipif(find_spec("torch") is None, reason="needs torch installed")
def test_skops_is_imported_without_torch_and_trusts_the_same_types() -> None:
    names = "sorted(m._trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES)"
    script = f"import json, sys; {{imp}}; print(json.dumps(['torch' in sys.modules, {names}]))"
    ours, plain = (
        json.loads(
            subprocess.run(
                [sys.executable, "-c", script.format(imp=imp)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )  # fmt: skip
        for imp in (
            "from nb2prod.runtime.model import import_skops_io; m = import_skops_io()",
            "import skops.io as m",
        )
    )
    assert ours[0] is False and plain[0] is True
    assert ours[1] == plain[1] and len(ours[1]) > 100


def _requirements_as_importlib_has_them(
    modules: Iterable[str],
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The straightforward version: the whole packages_distributions(), each field read apart."""
    providers = metadata.packages_distributions()
    wanted = set(modules) - set(sys.stdlib_module_names) - {"builtins", "__main__", "__mp_main__"}
    found: dict[str, str] = {}
    unresolved = []
    for module in sorted(wanted):
        if not providers.get(module):
            unresolved.append(module)
            continue
        for dist in providers[module]:
            found[metadata.metadata(dist)["Name"]] = metadata.version(dist)
    return found, tuple(unresolved)


def test_requirements_and_installed_distributions_are_importlibs() -> None:
    modules = {"numpy", "sklearn", "pydantic", "bentoml", "skops", "yaml", "google", "attr",
               "_yaml", "json", "__main__", "no_such_module_here"}  # fmt: skip
    found, unresolved = environment.requirements(modules)
    assert (found, unresolved) == _requirements_as_importlib_has_them(modules)
    assert list(found) == list(_requirements_as_importlib_has_them(modules)[0])
    everything: dict[str, str] = {}
    for dist in metadata.distributions():
        everything.setdefault(dist.metadata["Name"], dist.version)
    assert environment.installed_distributions() == dict(sorted(everything.items()))


def test_a_run_finds_the_distributions_of_the_same_modules_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, ...]] = []

    def counted(
        modules: Iterable[str], providers: object = None
    ) -> tuple[dict[str, str], tuple[str, ...]]:
        calls.append(tuple(sorted(modules)))
        return {"numpy": "2.0.0"}, ()

    monkeypatch.setattr(packages, "requirements", counted)
    installed = {"numpy": "2.0.0", "scipy": "1.14.0"}
    first = packages.run_packages(["numpy"], {}, installed)
    assert packages.run_packages(["numpy"], ["scipy"], installed) == {**first, "scipy": "1.14.0"}
    assert len(calls) == 1
    packages.run_packages(["numpy"], {}, {**installed, "numpy": "2.1.0"})  # installed since
    packages.run_packages(["numpy", "pandas"], {}, installed)
    assert len(calls) == 3


def test_the_providers_found_meanwhile_give_the_same_packages_without_another_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = environment.installed_distributions()
    modules = ["numpy", "sklearn", "pydantic", "yaml", "json", "no_such_module_here"]
    walked = packages.run_packages(modules, ["scipy"], installed)
    packages._IMPORTED.clear()
    packages.prepare(installed)  # what the warmup thread does while the kernel runs

    def no_walk(wanted: object) -> None:
        raise AssertionError("walked every distribution again")

    monkeypatch.setattr(environment, "_providers", no_walk)
    assert packages.run_packages(modules, ["scipy"], installed) == walked
    assert {"numpy", "scikit-learn", "pydantic", "pyyaml", "scipy"} <= set(walked)


def test_the_warmup_runs_its_steps_and_ignores_their_failures() -> None:
    ran: list[str] = []

    def fails() -> None:
        ran.append("fails")
        raise ImportError("not installed")

    with Warmup((fails, lambda: ran.append("second"))) as warm:
        later = warm.submit(lambda: ran.append("submitted") or "its result")
        warm.join()
        assert ran[:2] == ["fails", "second"]  # the steps first, in order
        assert later.result() == "its result" and ran == ["fails", "second", "submitted"]
    Warmup(()).join()  # never started: nothing to wait for


def test_servers_stopped_in_the_background_are_gone_when_the_block_ends(tmp_path: Path) -> None:
    """children.Stopping, as package uses it around verify: the server stops while the last files
    are written, and leaving the block (a later failure too) waits until it is gone."""
    from nb2prod.adapters import bento

    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              start_new_session=True)  # fmt: skip
    gone: list[int | None] = []

    def stopped() -> None:
        time.sleep(0.3)  # a graceful shutdown takes a while
        bento.stop(server)  # type: ignore[arg-type]
        gone.append(server.poll())

    with pytest.raises(RuntimeError, match="writing release.json failed"), Stopping() as s:
        s.defer(stopped)
        assert not gone  # the caller went on while it stops
        raise RuntimeError("writing release.json failed")
    assert gone and gone[0] is not None and server.poll() is not None


_LOAD_WITH = """\
import json, sys
from pathlib import Path
from nb2prod.runtime.model import import_skops_io, load_model, sha256_file
path, estimators = Path(sys.argv[1]), json.loads(sys.argv[2])
try:
    model = load_model(path, sha256_file(path), "skops", [], estimators)
    answer = model.predict([[5.1, 3.5, 1.4, 0.2]]).tolist()
except Exception as exc:
    answer = type(exc).__name__
listed = sys.modules["skops.io._trusted_types"].SKLEARN_ESTIMATOR_TYPE_NAMES
print(json.dumps([answer, len(listed), "torch" in sys.modules]))
"""


def test_the_recorded_estimators_are_all_skops_lists_and_trusts(tmp_path: Path) -> None:
    """model.json's estimators: skops lists only those (no walk of every sklearn package) and
    trusts exactly them; an estimator of the file left out of the list is refused."""
    from nb2prod.probe import serialize
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    fitted = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    stored = serialize.store(fitted, tmp_path, "model", lambda loaded: None)
    assert stored.format == "skops" and stored.estimators == (
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
    )

    def load(estimators: object) -> list[object]:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_WITH, str(tmp_path / stored.file), json.dumps(estimators)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return list(json.loads(done.stdout))

    expected = fitted.predict([[5.1, 3.5, 1.4, 0.2]]).tolist()
    assert load(list(stored.estimators)) == [expected, 3, False]  # those alone listed, no torch
    answer, listed, torch = load(None)  # unrecorded: every estimator listed, as skops does
    assert answer == expected and isinstance(listed, int) and listed > 100 and torch is False
    assert load(list(stored.estimators[1:]))[0] == "UntrustedTypesFoundException"


def test_the_recorded_environment_is_read_back_only_where_it_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packager's view of the environment, for the kernel's probe: the same distributions
    and providers, unless the reader is another Python or sees other distribution metadata."""
    installed = {"numpy": "2.0.0", "scikit-learn": "1.5.0"}
    providers = {"numpy": ["numpy"], "sklearn": ["scikit-learn"]}
    file = tmp_path / "environment.json"
    assert environment.recorded(str(file)) is None  # not written yet: the probe reads it all
    environment.record(file, installed, providers)
    assert environment.recorded(str(file)) == (
        installed,
        {"numpy": ("numpy",), "sklearn": ("scikit-learn",)},
    )
    plain = tmp_path / "notebooks"  # a notebook's directory: on the kernel's path only
    plain.mkdir()
    monkeypatch.setattr(sys, "path", [str(plain), *sys.path])
    assert environment.recorded(str(file)) is not None  # no metadata there: the same view
    (plain / "myproject.egg-info").mkdir()  # a project installed in development mode
    assert environment.recorded(str(file)) is None
    monkeypatch.setattr(sys, "path", sys.path[1:])
    monkeypatch.setattr(sys, "executable", "/other/python3")
    assert environment.recorded(str(file)) is None
    found, _ = environment.requirements({"sklearn", "numpy"}, environment.every_provider())
    assert found == environment.requirements({"sklearn", "numpy"})[0]
