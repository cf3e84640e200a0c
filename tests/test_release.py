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
