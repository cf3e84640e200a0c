"""The release writer: all or nothing, never touching an earlier release until success."""

from __future__ import annotations

from pathlib import Path

import pytest
from nb2prod.release.writer import Staging, canonical_json

from tests.conftest import tree_snapshot


def test_a_failed_run_leaves_nothing_and_keeps_the_earlier_release(tmp_path: Path) -> None:
    destination = tmp_path / "dist" / "svc-1.0.0"
    with Staging(destination) as staging:
        staging.write_json("release.json", {"v": 1})
        staging.commit()
    before = tree_snapshot(tmp_path)
    with pytest.raises(RuntimeError), Staging(destination) as staging:
        staging.write_json("release.json", {"v": 2})
        raise RuntimeError("build failed")
    assert tree_snapshot(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["svc-1.0.0"]


def test_a_failed_first_run_does_not_even_leave_dist(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), Staging(tmp_path / "dist" / "a" / "svc-1.0.0"):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_commit_replaces_a_release_of_the_same_version(tmp_path: Path) -> None:
    destination = tmp_path / "svc-1.0.0"
    for value in (1, 2):
        with Staging(destination) as staging:
            staging.write_json("release.json", {"v": value})
            staging.write_bytes(f"only-in-{value}.txt", b"x")
            staging.commit()
    assert sorted(tree_snapshot(destination)) == ["only-in-2.txt", "release.json"]
    assert list(tmp_path.iterdir()) == [destination]


def test_hashes_cover_every_file_but_the_manifest(tmp_path: Path) -> None:
    with Staging(tmp_path / "r") as staging:
        staging.write_bytes("a/b.txt", b"hello")
        staging.write_json("release.json", {})
        hashes = staging.hashes()
    assert hashes == {"a/b.txt": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": [2, {"d": 1, "c": 0}]}) == canonical_json(
        {"a": [2, {"c": 0, "d": 1}], "b": 1}
    )


def test_linked_files_are_the_selected_ones_and_keep_their_content_when_restaged(
    tmp_path: Path,
) -> None:
    """What verify serves while the bento is built: links to the files the bento will carry."""
    with Staging(tmp_path / "dist" / "svc-1.0.0") as staging:
        staging.write_bytes("service/service.py", b"served = 1\n")
        staging.write_bytes("model/model.skops", b"weights")
        staging.write_bytes("RUNBOOK.md", b"not in the bento")
        served = tmp_path / "served"
        linked = staging.link_files(served, lambda rel: not rel.endswith(".md"))
        assert linked == ["model/model.skops", "service/service.py"]
        assert (
            sorted(p.relative_to(served).as_posix() for p in served.rglob("*") if p.is_file())
            == linked
        )
        assert (served / "service/service.py").stat().st_ino == staging.path(
            "service/service.py"
        ).stat().st_ino
        staging.write_bytes("service/service.py", b"served = 2\n")  # written again after linking
        staging.copy("model/model.skops", served / "service/service.py")
        assert (served / "service/service.py").read_bytes() == b"served = 1\n"
        assert (served / "model/model.skops").read_bytes() == b"weights"
