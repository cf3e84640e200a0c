"""`nb2prod verify RELEASE --url URL` against a real served bento (`bentoml serve` on loopback,
with a token): the release passes every check; a wrong token, and another release's check of
this server, fail naming what differs. The `podman kube play` pod is checked the same way in
tests/e2e/test_deploy.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from nb2prod.adapters import bento
from nb2prod.release.reader import Release

from tests.conftest import IRIS, copy_iris
from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(
    iris_release: tuple[Path, Run], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """(URL, token file) of the iris release served on loopback; stopped afterwards."""
    release, _ = iris_release
    token = secrets.token_urlsafe(24)
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(token + "\n")
    with bento.serve(Release.open(release).bento_tag, env={"NB2PROD_API_TOKEN": token}) as server:
        yield server.url, path


def test_the_served_release_passes_every_check(
    iris_release: tuple[Path, Run], served: tuple[str, Path]
) -> None:
    release, _ = iris_release
    url, token = served
    run = nb2prod("verify", release, "--url", url, "--token-file", token)
    assert run.code == 0, run.stdout + run.stderr
    for line in (
        "✓ ready", "✓ metadata      iris-classifier 1.0.0, contract ", "✓ examples      3 examples",
        "✓ invalid input", "✓ no token      HTTP 401", "✓ wrong token   HTTP 401",
    ):  # fmt: skip
        assert line in run.stdout, run.stdout


def test_a_wrong_token_fails_naming_the_checks(
    iris_release: tuple[Path, Run], served: tuple[str, Path], tmp_path: Path
) -> None:
    release, _ = iris_release
    url, _ = served
    wrong = tmp_path / "wrong"
    wrong.write_text(secrets.token_urlsafe(24))
    run = nb2prod("verify", release, "--url", url, "--token-file", wrong)
    assert run.code == 1, run.stdout + run.stderr
    assert "✗ metadata      GET /v1/metadata -> HTTP 401" in run.stdout
    assert "✗ examples" in run.stdout and "✓ no token" in run.stdout
    assert (
        "check(s) failed" in run.stderr and "metadata: GET /v1/metadata -> HTTP 401" in run.stderr
    )


@pytest.fixture(scope="module")
def other_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris notebook released as 1.1.0: another release, its own bento."""
    work = tmp_path_factory.mktemp("iris-1.1.0")
    config = (
        (IRIS.parent / "nb2prod.toml").read_text().replace('version = "1.0.0"', 'version = "1.1.0"')
    )
    notebook = copy_iris(work, config)
    run = nb2prod("package", notebook, "--out", work / "dist" / "iris-classifier-1.1.0")
    assert run.code == 0, run.stdout + run.stderr
    return work / "dist" / "iris-classifier-1.1.0"


def test_another_release_is_not_what_the_server_runs(
    other_release: Path, served: tuple[str, Path]
) -> None:
    url, token = served
    run = nb2prod("verify", other_release, "--url", url, "--token-file", token)
    assert run.code == 1, run.stdout + run.stderr
    assert "✗ metadata      version: release '1.1.0', service '1.0.0'" in run.stdout
    assert "bento_tag: release 'iris-classifier:" in run.stdout
    assert f"{url} is not {Release.open(other_release).bento_tag} as released" in run.stderr
