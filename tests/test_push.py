"""`containerize --push`'s reference rules, the push record beside a sealed release, and
deploy-files pinning the image by the recorded digest (a real registry is tests/e2e/test_registry.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from nb2prod.adapters import container
from nb2prod.cli import main
from nb2prod.errors import ContainerError, TargetError
from nb2prod.image.push import destination_reference, pinned_reference
from nb2prod.ops.deploy import pinned_image
from nb2prod.release.reader import Release
from nb2prod.release.writer import IMAGES_JSONL, append_record

from tests.test_reader import lay_release

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return lay_release(tmp_path / "dist" / "iris-classifier-1.0.0")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:5000/iris-classifier", "127.0.0.1:5000/iris-classifier:1.0.0"),
        ("registry.example.com/team/iris:prod", "registry.example.com/team/iris:prod"),
        ("localhost/iris", "localhost/iris:1.0.0"),
    ],
)
def test_a_push_reference_gets_the_version_as_its_default_tag(given: str, expected: str) -> None:
    assert destination_reference(given, "1.0.0") == expected


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("iris-classifier:1.0.0", "names no registry"),
        ("team/iris", "names no registry"),
        (f"127.0.0.1:5000/iris@{DIGEST}", "has a digest"),
        ("127.0.0.1:5000/Iris", "`Iris` is not a repository name"),
        ("127.0.0.1:5000/iris:-bad", "`-bad` is not a tag"),
    ],
)
def test_a_bad_push_reference_is_named_with_an_example(given: str, says: str) -> None:
    with pytest.raises(ContainerError) as caught:
        destination_reference(given, "1.0.0")
    assert f"--push {given}: " in caught.value.message and says in caught.value.message
    assert caught.value.hint and "REGISTRY/NAME" in caught.value.hint or "e.g." in caught.value.hint


def test_the_pinned_reference_drops_the_tag_but_keeps_the_port() -> None:
    assert (
        pinned_reference("127.0.0.1:5000/a/iris:1.0.0", DIGEST) == f"127.0.0.1:5000/a/iris@{DIGEST}"
    )
    assert pinned_reference("127.0.0.1:5000/iris", DIGEST) == f"127.0.0.1:5000/iris@{DIGEST}"


def record(
    destination: str, digest: str, bento_tag: str = "iris-classifier:abcdefghijklmnop"
) -> dict:  # type: ignore[type-arg]
    return {
        "destination": destination, "digest": digest,
        "pinned": pinned_reference(destination, digest), "image_id": "f" * 64,
        "bento_tag": bento_tag, "pushed_at": "2026-12-02T00:00:00+00:00", "nb2prod_version": "0.1.0",
    }  # fmt: skip


def test_a_push_is_appended_beside_the_release_and_its_hashes_stay_valid(release: Path) -> None:
    manifest = (release / "release.json").read_bytes()
    append_record(release, IMAGES_JSONL, record("r.example.com/iris:1.0.0", DIGEST))
    append_record(release, IMAGES_JSONL, record("r.example.com/iris:prod", OTHER))
    assert (release / "release.json").read_bytes() == manifest
    opened = Release.open(release)
    opened.check_integrity()  # images.jsonl is not one of release.json's files
    assert [r.digest for r in opened.pushed_images] == [DIGEST, OTHER]
    assert len((release / IMAGES_JSONL).read_text().splitlines()) == 2


def test_a_record_only_goes_into_a_release_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a release directory"):
        append_record(tmp_path, IMAGES_JSONL, record("r.example.com/iris:1", DIGEST))


def test_a_broken_or_foreign_record_is_refused_with_its_line(release: Path) -> None:
    append_record(release, IMAGES_JSONL, record("r.example.com/iris:1", DIGEST))
    with (release / IMAGES_JSONL).open("a") as sink:
        sink.write('{"destination": "x"}\n')
    with pytest.raises(TargetError, match=rf"{IMAGES_JSONL}:2: not a record of a pushed image"):
        _ = Release.open(release).pushed_images
    (release / IMAGES_JSONL).write_text(
        json.dumps(record("r.example.com/x:1", DIGEST, "other:tag")) + "\n"
    )
    with pytest.raises(TargetError, match=r":1: records an image of bento other:tag"):
        _ = Release.open(release).pushed_images


def test_deploy_pins_the_newest_push_of_the_reference_asked_for(release: Path) -> None:
    opened = Release.open(release)
    assert pinned_image(opened, None) == (None, None)  # nothing pushed: the default, unpinned
    assert pinned_image(opened, "r.example.com/iris:1") == ("r.example.com/iris:1", None)
    append_record(release, IMAGES_JSONL, record("r.example.com/iris:1", DIGEST))
    append_record(release, IMAGES_JSONL, record("r.example.com/iris:2", OTHER))
    opened = Release.open(release)
    assert pinned_image(opened, None)[0] == f"r.example.com/iris@{OTHER}"  # the newest push
    image, source = pinned_image(opened, "r.example.com/iris:1")
    assert image == f"r.example.com/iris@{DIGEST}" and source and IMAGES_JSONL in source
    given = f"r.example.com/iris@{'0' * 64}"
    assert pinned_image(opened, given) == (given, "--image")  # a digest given wins
    assert pinned_image(opened, "r.example.com/iris:3") == ("r.example.com/iris:3", None)


def test_deploy_files_writes_the_recorded_digest_in_every_manifest(
    release: Path, tmp_path: Path
) -> None:
    append_record(release, IMAGES_JSONL, record("r.example.com/iris:1.0.0", DIGEST))
    out = tmp_path / "d"
    result = CliRunner().invoke(main, ["deploy-files", str(release), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"digest     from {IMAGES_JSONL}" in result.output and "not pinned" not in result.output
    pinned = f"r.example.com/iris@{DIGEST}"
    images = [
        c["image"]
        for path in sorted(out.rglob("*.yaml"))
        if "helm" not in path.parts
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict)
        for c in _containers(doc)
    ]
    assert images and set(images) == {pinned}
    values = yaml.safe_load(next(out.glob("helm/*/values.yaml")).read_text())
    assert values["image"] == pinned == values["canary"]["image"]


def _containers(doc: dict) -> list[dict]:  # type: ignore[type-arg]
    found: list[dict] = []  # type: ignore[type-arg]
    if isinstance(doc.get("containers"), list):
        found += [c for c in doc["containers"] if isinstance(c, dict) and "image" in c]
    for value in doc.values():
        if isinstance(value, dict):
            found += _containers(value)
    return found


def test_docker_cannot_be_told_to_skip_tls_verification_per_push() -> None:
    engine = container.Engine("docker", "/usr/bin/docker", "test")
    with pytest.raises(ContainerError, match="--no-tls-verify: docker cannot push") as caught:
        container.push(engine, "localhost/iris:1", "127.0.0.1:5000/iris:1", tls_verify=False)
    assert caught.value.hint and "insecure-registries" in caught.value.hint


def test_no_tls_verify_without_push_and_a_bad_push_reference_fail_before_the_build() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["containerize", "x", "--no-tls-verify"])
    assert result.exit_code == 2 and "--no-tls-verify is a setting of --push" in result.output
    result = runner.invoke(main, ["containerize", "no-such-release", "--push", "iris:1"])
    assert result.exit_code == 1 and "names no registry" in result.output


def test_a_tls_failure_on_a_plain_http_registry_hints_no_tls_verify() -> None:
    # podman 4.3's words when TLS verification meets a plain-HTTP registry
    said = (
        "Error: trying to reuse blob sha256:952f at destination: pinging container registry "
        '127.0.0.1:5000: Get "https://127.0.0.1:5000/v2/": http: server gave HTTP response to '
        "HTTPS client"
    )
    assert "--no-tls-verify" in container._push_hint(said, tls_verify=True)
    assert "--no-tls-verify" not in container._push_hint(said, tls_verify=False)
    assert "podman login" in container._push_hint("unauthorized: authentication required", True)
