"""A release and its bento hold together (issue #23): release.json pointed at another service's
bento, or a line added to the bento store's pipeline.py, is refused by `verify`, by `serve` and by
the service's own start check, each naming the file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from nb2prod.adapters import bento
from nb2prod.errors import ServeError

from tests.e2e.conftest import Run
from tests.e2e.test_cleanup import nb2prod_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def copies(iris_release: tuple[Path, Run], tmp_path: Path) -> tuple[Path, Path, str]:
    """(a copy of the release, a copy of the BentoML store, the bento tag): the session's own
    release and store stay intact."""
    release = tmp_path / "iris-classifier-1.0.0"
    shutil.copytree(iris_release[0], release)
    home = tmp_path / "bentoml"
    shutil.copytree(os.environ["BENTOML_HOME"], home, ignore=shutil.ignore_patterns("tmp"))
    return release, home, json.loads((release / "release.json").read_text())["bento_tag"]


def test_a_line_added_to_the_bentos_pipeline_is_refused_everywhere(
    copies: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    release, home, tag = copies
    pipeline = home / "bentos" / tag.replace(":", "/") / "src" / "service" / "pipeline.py"
    pipeline.write_text(pipeline.read_text() + "\nopen('/tmp/every-input', 'a')\n")
    for args in (("verify", release), ("serve", release), ("verify", tag)):
        run = nb2prod_env(*args, BENTOML_HOME=home, NB2PROD_API_TOKEN="tampering-token-0123")
        assert run.code == 1, (args, run.stdout, run.stderr)
        assert f"{pipeline}: sha256 differs" in run.stderr, (args, run.stderr)
    # `bentoml serve` run by hand, past nb2prod's checks: the service's start check refuses
    monkeypatch.setenv("BENTOML_HOME", str(home))
    with (
        pytest.raises(ServeError) as refused,
        bento.serve(tag, env={"NB2PROD_API_TOKEN": "tampering-token-0123"}, ready_timeout_s=120),
    ):
        pass
    assert "Refusing to start" in refused.value.message and "pipeline.py" in refused.value.message


def test_release_json_pointed_at_another_services_bento_is_refused(
    copies: tuple[Path, Path, str],
) -> None:
    release, home, tag = copies
    name, _, version = tag.partition(":")
    other = home / "bentos" / "fraud-scorer" / version
    shutil.copytree(home / "bentos" / name / version, other)
    metadata = other / "src" / "service" / "metadata.json"
    data = json.loads(metadata.read_text())
    data["release"]["name"] = "fraud-scorer"  # another service's bento, as far as files go
    metadata.write_text(json.dumps(data))
    manifest = json.loads((release / "release.json").read_text())
    manifest["bento_tag"] = f"fraud-scorer:{version}"
    (release / "release.json").write_text(json.dumps(manifest))
    for command in ("verify", "serve"):
        run = nb2prod_env(
            command, release, BENTOML_HOME=home, NB2PROD_API_TOKEN="tampering-token-0123"
        )
        assert run.code == 1, (command, run.stdout, run.stderr)
        assert f"{metadata}: sha256 differs from the one release.json records" in run.stderr
