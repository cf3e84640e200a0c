"""The cold start of the packaged iris release in phases, as verify measured it under a real
``bentoml serve``: release.json, the report, and deploy/'s startup probe sized from it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from nb2prod.adapters import bento

from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e
PHASES = ("import_s", "model_load_s", "first_answer_s")


def test_release_json_has_the_cold_start_in_phases_summing_to_the_total(
    iris_release: tuple[Path, Run],
) -> None:
    release, run = iris_release
    serving = json.loads((release / "release.json").read_text())["serving"]
    cold = serving["cold_start"]
    assert set(cold) == {*PHASES, "total_s"}
    assert all(cold[phase] > 0 for phase in PHASES), cold
    assert math.isclose(sum(cold[p] for p in PHASES), cold["total_s"], abs_tol=0.005), cold
    # the total runs to the first answer, a request after /readyz answered
    assert cold["total_s"] >= serving["cold_start_s"] - 0.02, serving
    assert cold["total_s"] < 120
    assert f"(import {cold['import_s']:.1f} s, model load" in run.stdout


def test_the_report_shows_the_phases_and_the_probe_is_sized_from_their_total(
    iris_release: tuple[Path, Run],
) -> None:
    release, _ = iris_release
    cold = json.loads((release / "release.json").read_text())["serving"]["cold_start"]
    markdown = (release / "evaluation" / "report.md").read_text()
    assert "## Cold start" in markdown
    assert f"| model load | {cold['model_load_s']:.3f} |" in markdown
    html = (release / "evaluation" / "report.html").read_text()
    assert 'alt="Cold start in phases"' in html and "data:image/png;base64," in html
    deployment = yaml.safe_load((release / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= max(60, 4 * cold["total_s"])
    header = (release / "deploy" / "kubernetes" / "deployment.yaml").read_text().splitlines()[1]
    assert f"measured by verify: {cold['total_s']:.1f} s = import" in header


# what nb2prod packages with, never what a served release needs
NOT_SERVED = ("matplotlib", "nbformat", "papermill", "nbclient", "cookiecutter", "nb2prod")
IMPORTS = """
import json, sys
import service.service as module
module.IrisClassifier.inner()  # a worker's Handlers.__init__: the model and fitted state loaded
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def test_the_served_service_imports_nothing_of_packaging(iris_release: tuple[Path, Run]) -> None:
    """The bento's service module and its model load, as a worker runs them (python -X importtime
    shows the same list): no plotting, notebook or packaging code."""
    release, _ = iris_release
    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    proc = subprocess.run(
        [sys.executable, "-c", IMPORTS], cwd=bento.path_of(tag) / "src", capture_output=True,
        text=True, timeout=300, env={**os.environ, "NB2PROD_API_TOKEN": "t" * 24},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = set(json.loads(proc.stdout.splitlines()[-1]))
    assert {"bentoml", "skops", "service"} <= modules  # what serving does need
    assert not modules & set(NOT_SERVED), sorted(modules & set(NOT_SERVED))
