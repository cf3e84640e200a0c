"""The one reader of a release: typed files, and the integrity check that refuses a modified one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nb2prod.adapters import bento
from nb2prod.errors import TargetError
from nb2prod.release.reader import Release, previous_release, resolve
from nb2prod.release.writer import canonical_json, sha256_bytes
from nb2prod.runtime.schema import dump

from tests.factories import examples, monitoring_plan, release_manifest, service_metadata

RUNTIME = {"model.py": b"# the runtime's model path\n", "app.py": b"# the service\n"}
INPUT = {"x": 1.0}


def lay_release(root: Path, *, version: str = "1.0.0") -> Path:
    """A release directory as `package` lays it out, every file's sha256 in release.json."""
    files = {f"service/runtime/{name}": data for name, data in RUNTIME.items()}
    files |= {
        "service/metadata.json": canonical_json(
            dump(
                service_metadata(
                    version=version,
                    runtime_files={name: sha256_bytes(data) for name, data in RUNTIME.items()},
                )
            )
        ),
        "service/monitoring.json": canonical_json(dump(monitoring_plan())),
        "examples.json": canonical_json(dump(examples((INPUT, {"y": 2.0})))),
        "contract.json": canonical_json({"input": {}, "output": {}, "sha256": "c" * 64}),
        "evaluation/report.json": canonical_json({"metrics": {"accuracy": 0.97}}),
    }
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    manifest = release_manifest(
        files={relative: sha256_bytes(data) for relative, data in files.items()}, version=version
    )
    (root / "release.json").write_bytes(canonical_json(dump(manifest)))
    return root


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return lay_release(tmp_path / "dist" / "iris-classifier-1.0.0")


def test_a_release_directory_reads_as_typed_files(release: Path) -> None:
    opened = resolve(str(release / "contract.json"))  # a file in it names the release too
    assert opened == Release.open(release)
    assert opened.directory == release and opened.bento_tag == "iris-classifier:abcdefghijklmnop"
    assert opened.manifest is not None and opened.manifest.version == "1.0.0"
    assert set(opened.files) == set(json.loads((release / "release.json").read_text())["files"])
    assert opened.runtime_files == {name: sha256_bytes(data) for name, data in RUNTIME.items()}
    assert opened.metadata.release.name == "iris-classifier"
    assert opened.monitoring.batching.enabled
    assert [(e.index, e.input, e.output) for e in opened.examples] == [(0, INPUT, {"y": 2.0})]
    assert opened.contract["sha256"] == "c" * 64
    assert opened.metrics == {"accuracy": 0.97}
    assert opened.python_version == "3.11.7"
    assert opened.requirements_lock == release / "requirements.lock"
    assert opened.manifest_sha256() == sha256_bytes((release / "release.json").read_bytes())
    opened.check_integrity()


def test_a_tampered_file_is_refused_naming_it(release: Path) -> None:
    (release / "examples.json").write_bytes(b'{"examples": []}\n')
    with pytest.raises(TargetError) as caught:
        Release.open(release).check_integrity()
    assert caught.value.message == (
        f"{release / 'examples.json'}: sha256 differs from the one release.json records; "
        "the release was modified after packaging"
    )


def test_a_missing_file_is_refused_naming_it(release: Path) -> None:
    (release / "evaluation" / "report.json").unlink()
    with pytest.raises(TargetError) as caught:
        Release.open(release).check_integrity()
    assert caught.value.message == (
        f"{release / 'evaluation' / 'report.json'}: listed in release.json but missing"
    )


def test_a_runtime_copy_that_differs_from_metadata_json_is_refused(release: Path) -> None:
    """metadata.json records the runtime the release was built with; release.json agreeing with
    an edited copy (re-hashed by hand) does not make it that runtime."""
    model = release / "service" / "runtime" / "model.py"
    model.write_bytes(b"# edited\n")
    manifest = json.loads((release / "release.json").read_text())
    manifest["files"]["service/runtime/model.py"] = sha256_bytes(b"# edited\n")
    (release / "release.json").write_bytes(canonical_json(manifest))
    with pytest.raises(TargetError) as caught:
        Release.open(release).check_integrity()
    assert caught.value.message == (
        f"{model}: not the runtime the release was built with (sha256 differs from the one "
        "service/metadata.json records)"
    )


def test_a_bento_has_its_runtime_copy_checked(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bento has no release.json: its runtime copy is what can be checked."""
    store = tmp_path / "bentos" / "iris-classifier" / "abc"
    (store / "src").parent.mkdir(parents=True)
    release.rename(store / "src")
    (store / "src" / "release.json").unlink()
    monkeypatch.setattr(bento, "path_of", lambda tag: store)
    monkeypatch.setattr(bento, "info", lambda tag: {"tag": tag})
    opened = resolve("iris-classifier:abc")
    assert (opened.source, opened.manifest, opened.directory, opened.files) == (
        "bento", None, None, {}
    )  # fmt: skip
    assert opened.requirements_lock == store / "env" / "python" / "requirements.txt"
    opened.check_integrity()
    (store / "src" / "service" / "runtime" / "app.py").unlink()
    with pytest.raises(TargetError) as caught:
        opened.check_integrity()
    assert caught.value.message == (
        f"{store / 'src' / 'service' / 'runtime' / 'app.py'}: part of the runtime the release "
        "was built with (service/metadata.json), but missing"
    )


def test_a_release_json_that_does_not_fit_names_the_field(release: Path) -> None:
    manifest = json.loads((release / "release.json").read_text())
    del manifest["cache_key"]
    (release / "release.json").write_bytes(canonical_json(manifest))
    with pytest.raises(TargetError) as caught:
        resolve(str(release))
    assert str(release / "release.json") in caught.value.message
    assert "field `cache_key`: Field required" in caught.value.message
    assert caught.value.hint and "Re-package" in caught.value.hint


def test_a_release_file_that_does_not_fit_names_the_file_and_the_field(release: Path) -> None:
    (release / "examples.json").write_text(json.dumps({"examples": [{"input": {}}]}))
    with pytest.raises(TargetError, match=r"examples\.json: field `generated_by`: Field required"):
        Release.open(release).examples  # noqa: B018 -- read on first use


def test_a_missing_release_file_says_where_it_was_looked_for(release: Path) -> None:
    (release / "service" / "monitoring.json").unlink()
    with pytest.raises(TargetError) as caught:
        Release.open(release).monitoring  # noqa: B018 -- read on first use
    assert caught.value.message == (
        f"{release / 'service' / 'monitoring.json'}: missing; is {release} an nb2prod release?"
    )


def test_a_directory_without_release_json_is_not_a_release(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"not an nb2prod release \(no release.json\)"):
        resolve(str(tmp_path))


def test_a_staged_release_has_no_manifest_yet(release: Path) -> None:
    staged = Release.staged(release, "iris-classifier:new")
    assert (staged.directory, staged.manifest, staged.bento_tag) == (
        None,
        None,
        "iris-classifier:new",
    )
    assert staged.metadata.release.version == "1.0.0"


def test_previous_release_skips_what_nb2prod_cannot_read(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    lay_release(dist / "iris-classifier-1.0.0", version="1.0.0")
    lay_release(dist / "iris-classifier-1.1.0", version="1.1.0")
    (dist / "iris-classifier-1.1.0" / "release.json").write_text("{}")  # not one nb2prod wrote
    found = previous_release(dist, "iris-classifier", "2.0.0")
    assert found is not None and found.version == "1.0.0"
    assert found.directory == str(dist / "iris-classifier-1.0.0")


# --- the bento is this release's (issue #23: release.json re-pointed, a bento edited in the store)


def lay_bento(home: Path, tag: str, files: dict[str, bytes]) -> Path:
    """A bento in a BentoML store as `bentoml build` lays it out: bento.yaml and src/."""
    name, _, version = tag.partition(":")
    store = home / "bentos" / name / version
    for relative, data in files.items():
        (store / "src" / relative).parent.mkdir(parents=True, exist_ok=True)
        (store / "src" / relative).write_bytes(data)
    (store / "bento.yaml").write_text(f"name: {name}\nversion: {version}\n")
    return store


def bento_release(
    root: Path, name: str = "iris-classifier", pipeline: bytes | None = None
) -> tuple[Path, dict[str, bytes]]:
    """A release whose metadata.json records every file its bento carries, and those files."""
    carried = {
        "service/pipeline.py": pipeline or f"# {name}'s pipeline\n".encode(),
        "contract.json": canonical_json({"input": {}, "output": {}, "sha256": "c" * 64}),
    }
    runtime = {f"service/runtime/{k}": v for k, v in RUNTIME.items()}
    metadata = canonical_json(dump(service_metadata(
        name=name,
        runtime_files={k: sha256_bytes(v) for k, v in RUNTIME.items()},
        files={k: sha256_bytes(v) for k, v in carried.items()},
    )))  # fmt: skip
    files = {**carried, **runtime, "service/metadata.json": metadata}
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    manifest = release_manifest(
        files={k: sha256_bytes(v) for k, v in files.items()}, bento_tag=f"{name}:abc"
    )
    (root / "release.json").write_bytes(canonical_json(dump(manifest)))
    return root, files


def test_a_release_checks_that_its_bento_carries_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    root, files = bento_release(tmp_path / "dist" / "iris-classifier-1.0.0")
    store = lay_bento(tmp_path / "home", "iris-classifier:abc", files)
    Release.open(root).check_integrity()
    Release.of_bento("iris-classifier:abc").check_integrity()

    # a line added to the bento's pipeline.py in the store: refused, the file named
    pipeline = store / "src" / "service" / "pipeline.py"
    pipeline.write_bytes(files["service/pipeline.py"] + b"open('/tmp/inputs', 'a')\n")
    for release in (Release.open(root), Release.of_bento("iris-classifier:abc")):
        with pytest.raises(TargetError) as caught:
            release.check_integrity()
        assert caught.value.message.startswith(f"{pipeline}: sha256 differs from the one")


def test_a_release_json_pointed_at_another_bento_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    root, _ = bento_release(tmp_path / "dist" / "iris-classifier-1.0.0")
    _, other = bento_release(tmp_path / "other", name="fraud-scorer")
    lay_bento(tmp_path / "home", "fraud-scorer:abc", other)
    manifest = json.loads((root / "release.json").read_text())
    manifest["bento_tag"] = "fraud-scorer:abc"  # release.json lists no hash of itself
    (root / "release.json").write_text(json.dumps(manifest))
    with pytest.raises(TargetError) as caught:
        Release.open(root).check_integrity()
    metadata = (
        tmp_path / "home" / "bentos" / "fraud-scorer" / "abc" / "src" / "service" / "metadata.json"
    )
    assert caught.value.message.startswith(f"{metadata}: sha256 differs from the one release.json")
    assert "fraud-scorer:abc is not the one packaged with this release" in caught.value.message
