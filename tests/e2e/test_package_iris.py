"""The iris example packaged with a real kernel and real BentoML, then served on loopback."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nb2prod.adapters import bento
from nb2prod.errors import ServeError
from nb2prod.release.writer import canonical_json

from tests.conftest import copy_iris, tree_snapshot
from tests.e2e.conftest import Run, bento_tags, iris_cache, nb2prod
from tests.golden import compare_tree

pytestmark = pytest.mark.e2e
TOKEN = "test-token-not-secret"
SPEC_FILES = [
    "release.json", "contract.json", "openapi.json", "requirements.lock", "examples.json",
    "evaluation/report.json", "notebook.executed.ipynb", "model/model.skops", "model/model.json",
    "service/service.py", "service/pipeline.py", "service/bentofile.yaml",
    "service/tests/test_contract.py", "RUNBOOK.md",
]  # fmt: skip


def load(release: Path, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((release / name).read_text())


def test_prints_each_stage_with_its_duration_and_the_bento_tag(
    iris_release: tuple[Path, Run],
) -> None:
    release, run = iris_release
    for stage in ("parse", "execute", "evaluate", "contract", "lock", "write", "build", "verify"):
        assert re.search(rf"✓ {stage}\s+\d+\.\d\d s", run.stdout), f"no finished line for {stage}"
    tag = load(release, "release.json")["bento_tag"]
    assert f"bento tag  {tag}" in run.stdout
    assert f"nb2prod serve {release}" in run.stdout and f"nb2prod verify {release}" in run.stdout


def test_release_has_the_layout_of_the_spec(iris_release: tuple[Path, Run]) -> None:
    release, _ = iris_release
    for name in SPEC_FILES:
        assert (release / name).is_file(), name
    assert not [p for p in release.parent.iterdir() if p != release], "staging left behind"


def test_release_json_records_provenance_and_true_hashes_of_every_file(
    iris_release: tuple[Path, Run],
) -> None:
    release, _ = iris_release
    manifest = load(release, "release.json")
    for key in ("name", "version", "bento_tag", "created_at", "git_commit", "notebook_sha256",
                "parameters", "python_version"):  # fmt: skip
        assert key in manifest
    on_disk = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()} - {
        "release.json"
    }
    assert set(manifest["files"]) == on_disk
    for name, recorded in manifest["files"].items():
        assert hashlib.sha256((release / name).read_bytes()).hexdigest() == recorded, name
    notebook = release.parent.parent / "iris.ipynb"
    assert manifest["notebook_sha256"] == hashlib.sha256(notebook.read_bytes()).hexdigest()


def test_requirements_lock_pins_every_package_with_hashes(iris_release: tuple[Path, Run]) -> None:
    text = (iris_release[0] / "requirements.lock").read_text()
    requirements = [li for li in text.splitlines() if li and not li.startswith((" ", "#"))]
    assert len(requirements) > 20
    for line in requirements:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[^ ]+ \\", line), line
    assert text.count("--hash=sha256:") >= len(requirements)
    # uvloop and httptools: uvicorn under `bentoml serve` picks them, in the image too
    for direct in ("scikit-learn==", "bentoml==1.4.39", "pydantic==", "numpy==", "uvloop==",
                   "httptools=="):  # fmt: skip
        assert f"\n{direct}" in text
    assert "/tmp/" not in text and "index-url" not in text


def test_the_bento_is_in_the_store_with_its_labels(iris_release: tuple[Path, Run]) -> None:
    release, _ = iris_release
    tag = load(release, "release.json")["bento_tag"]
    assert tag in bento_tags()
    info = bento.info(tag)
    assert info is not None
    labels = info["labels"]
    assert isinstance(labels, dict)
    assert labels["nb2prod.version"] == "1.0.0"
    assert labels["nb2prod.notebook-sha256"] == load(release, "release.json")["notebook_sha256"]


def test_generated_service_and_contract_match_the_goldens(
    iris_release: tuple[Path, Run], request: pytest.FixtureRequest
) -> None:
    release, _ = iris_release
    files = {
        p.relative_to(release).as_posix(): p.read_bytes()
        for p in sorted(release.rglob("*"))
        if p.is_file()
        and (
            p.parts[-2] in ("service", "tests")
            or p.name in ("contract.json", "release.json", "RUNBOOK.md", "MODEL_CARD.md")
        )
    }
    compare_tree(files, "iris", update=request.config.getoption("--update-goldens"))


def test_contract_sha256_covers_the_schemas(iris_release: tuple[Path, Run]) -> None:
    contract = load(iris_release[0], "contract.json")
    body = canonical_json({"input": contract["input"], "output": contract["output"]})
    assert contract["sha256"] == hashlib.sha256(body).hexdigest()
    assert contract["input"]["properties"]["sepal_length"]["description"] == "Sepal length in cm"
    assert contract["input"]["required"] == [
        "sepal_length", "sepal_width", "petal_length", "petal_width"
    ]  # fmt: skip


@pytest.fixture(scope="module")
def served(iris_release: tuple[Path, Run]) -> Iterator[tuple[str, Path]]:
    release, _ = iris_release
    tag = load(release, "release.json")["bento_tag"]
    with bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as server:
        yield server.url, release


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_served_answers_match_the_notebook(served: tuple[str, Path]) -> None:
    url, release = served
    for example in load(release, "examples.json")["examples"]:
        response = httpx.post(f"{url}/v1/predict", json=example["input"], headers=auth())
        assert response.status_code == 200
        assert response.json() == {
            "output": example["output"], "model_version": "1.0.0", "degraded": False, "reason": None
        }  # fmt: skip


def test_batch_route_answers_every_item(served: tuple[str, Path]) -> None:
    url, release = served
    examples = load(release, "examples.json")["examples"]
    response = httpx.post(
        f"{url}/v1/predict_batch", json={"inputs": [e["input"] for e in examples]}, headers=auth()
    )
    assert response.status_code == 200
    assert [r["output"] for r in response.json()["results"]] == [e["output"] for e in examples]


def test_input_breaking_the_contract_gets_4xx_naming_each_field(served: tuple[str, Path]) -> None:
    url, _ = served
    body = {"sepal_length": -1, "sepal_width": "wide", "petal_length": 1.0, "colour": "blue"}
    response = httpx.post(f"{url}/v1/predict", json=body, headers=auth())
    assert response.status_code == 400
    fields = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert fields == {("sepal_length",), ("sepal_width",), ("petal_width",), ("colour",)}


def test_v1_routes_need_the_token_and_probes_do_not(served: tuple[str, Path]) -> None:
    url, release = served
    example = load(release, "examples.json")["examples"][0]["input"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = httpx.post(f"{url}/v1/predict", json=example, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{url}/v1/metadata").status_code == 401
    assert httpx.get(f"{url}/livez").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert "bentoml_service_request" in httpx.get(f"{url}/metrics").text


def test_metadata_describes_the_release(served: tuple[str, Path]) -> None:
    url, release = served
    meta = httpx.get(f"{url}/v1/metadata", headers=auth()).json()
    manifest = load(release, "release.json")
    assert meta["bento_tag"] == manifest["bento_tag"]
    assert meta["version"] == "1.0.0" and meta["owner"] == "Data Science <ds@example.com>"
    # [owners], `owner` standing for the model's owner
    assert meta["owners"] == {
        "model": "Data Science <ds@example.com>", "service": "ml-platform", "data": None,
        "on_call": "ml-oncall",
        "runbook_base_url": "https://git.example.com/ds/iris-classifier/-/blob/main/release",
    }  # fmt: skip
    assert meta["contract_sha256"] == load(release, "contract.json")["sha256"]
    assert meta["git_commit"] == manifest["git_commit"]
    assert meta["evaluation"]["metrics"]["accuracy"] >= 0.9
    assert meta["evaluation"]["holdout"]["baseline"]["accuracy"] < 0.5  # the summary, not raw data
    assert "confusion" not in meta["evaluation"]["holdout"]


def test_verify_command_passes_on_the_release(iris_release: tuple[Path, Run]) -> None:
    run = nb2prod("verify", iris_release[0])
    assert run.code == 0, run.stdout + run.stderr
    assert "3 examples answer as in the notebook" in run.stdout


def test_verify_refuses_a_modified_release(iris_release: tuple[Path, Run], tmp_path: Path) -> None:
    copy = tmp_path / "release"
    shutil.copytree(iris_release[0], copy)
    with (copy / "model" / "model.skops").open("ab") as handle:
        handle.write(b"\0")
    run = nb2prod("verify", copy)
    assert run.code == 1
    assert "model.skops: sha256 differs" in run.stderr


def test_the_service_refuses_to_start_without_a_token(iris_release: tuple[Path, Run]) -> None:
    tag = load(iris_release[0], "release.json")["bento_tag"]
    with pytest.raises(ServeError) as err, bento.serve(tag, env={"NB2PROD_API_TOKEN": ""}):
        pass
    assert "refusing to start without a token" in err.value.message
    run = nb2prod("serve", iris_release[0])
    assert run.code == 1 and "requires a bearer token" in run.stderr


def test_disabled_model_makes_the_fallback_answer(iris_release: tuple[Path, Run]) -> None:
    release, _ = iris_release
    tag = load(release, "release.json")["bento_tag"]
    example = load(release, "examples.json")["examples"][2]
    env = {"NB2PROD_API_TOKEN": TOKEN, "NB2PROD_MODEL_DISABLED": "1"}
    with bento.serve(tag, env=env) as server:
        body = httpx.post(f"{server.url}/v1/predict", json=example["input"], headers=auth()).json()
    assert body == {
        "output": example["fallback_output"], "model_version": "1.0.0", "degraded": True,
        "reason": "disabled",
    }  # fmt: skip


def test_the_model_is_stored_in_the_safest_format_that_round_trips(
    iris_release: tuple[Path, Run],
) -> None:
    release, _ = iris_release
    model = load(release, "model/model.json")
    assert (model["format"], model["file"], model["trusted"]) == ("skops", "model.skops", [])
    assert (
        model["sha256"]
        == hashlib.sha256((release / "model" / "model.skops").read_bytes()).hexdigest()
    )
    runbook = (release / "RUNBOOK.md").read_text()
    assert "format **skops**" in runbook and "only scikit-learn and numpy types" in runbook
    assert "\nskops==" in (release / "requirements.lock").read_text()


def test_the_service_refuses_a_tampered_model(iris_release: tuple[Path, Run]) -> None:
    tag = load(iris_release[0], "release.json")["bento_tag"]
    model = bento.path_of(tag) / "src" / "model" / "model.skops"
    original = model.read_bytes()
    try:
        model.write_bytes(original + b"\0")
        with pytest.raises(ServeError) as err, bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}):
            pass
    finally:
        model.write_bytes(original)
    assert "model.skops: sha256 is" in err.value.message and "refusing to load" in err.value.message


def test_repackaging_with_nothing_changed_is_up_to_date(iris_release: tuple[Path, Run]) -> None:
    release, _ = iris_release
    before = tree_snapshot(release)
    run = nb2prod("package", release.parent.parent / "iris.ipynb", "--out", release)
    assert run.code == 0, run.stderr
    assert "reused:" in run.stdout and "up to date iris-classifier 1.0.0" in run.stdout
    assert "▸ execute" not in run.stdout
    assert tree_snapshot(release) == before


def test_one_changed_byte_invalidates_the_cache(
    iris_release: tuple[Path, Run], tmp_path: Path
) -> None:
    release, first = iris_release
    notebook = copy_iris(tmp_path)
    notebook.write_bytes(notebook.read_bytes().replace(b"Iris classifier", b"Iris classifieR"))
    run = nb2prod("package", notebook, "--out", tmp_path / "release")
    assert run.code == 0, run.stderr
    assert "papermill, top to bottom" in run.stdout and "(reused" not in run.stdout
    assert load(tmp_path / "release", "release.json")["reused"] == []
    # and the unchanged notebook, packaged to a new place, reuses the first run
    again = nb2prod(
        "package", release.parent.parent / "iris.ipynb", "--out", tmp_path / "again",
        env=iris_cache(iris_release),
    )  # fmt: skip
    assert again.code == 0, again.stderr
    assert "reusing the cached run" in again.stdout
    assert load(tmp_path / "again", "release.json")["reused"] == ["execution", "lock"]
    assert (tmp_path / "again" / "requirements.lock").read_bytes() == (
        release / "requirements.lock"
    ).read_bytes()
    assert first.code == 0


def test_release_carries_the_runtime_byte_for_byte(iris_release: tuple[Path, Run]) -> None:
    """service/runtime/ is an exact copy of nb2prod.runtime, and metadata.json says so."""
    import nb2prod.runtime

    release, _ = iris_release
    installed = Path(nb2prod.runtime.__file__).parent
    copied = release / "service" / "runtime"
    names = sorted(p.name for p in copied.glob("*.py"))
    assert names == sorted(p.name for p in installed.glob("*.py"))
    manifest = load(release, "service/metadata.json")["runtime"]
    for name in names:
        assert (copied / name).read_bytes() == (installed / name).read_bytes(), name
        assert manifest["files"][name] == hashlib.sha256((copied / name).read_bytes()).hexdigest()
    listed = load(release, "release.json")["files"]
    assert {f"service/runtime/{n}" for n in names} <= set(listed)
