"""`nb2prod verify RELEASE --url URL`: each check of a running deployment, passing and failing
(an httpx mock transport stands in for the deployment; a served bento and a kube play pod are
tests/e2e/test_live.py and tests/e2e/test_deploy.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from nb2prod.cli import main
from nb2prod.errors import ParityError, ServeError, TargetError
from nb2prod.pipeline import live
from nb2prod.pipeline.live import raise_for_failures, read_token, verify_live
from nb2prod.release.reader import Release
from nb2prod.runtime.schema import dump

from tests.test_reader import INPUT, lay_release

TOKEN = "a-token-of-the-deployment-0123"
ANSWER = {"y": 2.0}


@pytest.fixture
def release(tmp_path: Path) -> Release:
    return Release.open(lay_release(tmp_path / "dist" / "iris-classifier-1.0.0"))


def deployment(
    release: Release,
    *,
    metadata: dict[str, Any] | None = None,
    answer: Callable[[dict[str, Any]], dict[str, Any]] = lambda _: ANSWER,
    invalid_status: int = 422,
    token: str | None = TOKEN,
) -> httpx.MockTransport:
    """A deployment of ``release`` as nb2prod's runtime answers, with what a test changes."""
    served = {
        **dump(release.metadata)["release"],
        "bento_tag": release.bento_tag,
        **(metadata or {}),
    }

    def envelope(body: dict[str, Any]) -> dict[str, Any]:
        return {"output": answer(body), "model_version": "1.0.0", "degraded": False, "reason": None}

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/readyz":
            return httpx.Response(200, text="ok")
        if token and request.headers.get("Authorization") != f"Bearer {token}":
            return httpx.Response(401, json={"error": "unauthorized"})
        body = json.loads(request.content) if request.content else {}
        if path == "/v1/metadata":
            return httpx.Response(200, json=served)
        if path == "/v1/predict":
            if set(body) != set(INPUT):
                return httpx.Response(invalid_status, json={"error": "invalid"})
            return httpx.Response(200, json=envelope(body))
        if path == "/v1/predict_batch":
            return httpx.Response(200, json={"results": [envelope(b) for b in body["inputs"]]})
        return httpx.Response(404)

    return httpx.MockTransport(handle)


def checks(report: live.LiveReport) -> dict[str, bool]:
    return {c.name: c.ok for c in report.checks}


def test_the_deployment_of_the_release_passes_every_check(release: Release) -> None:
    report = verify_live(release, "http://d.test/", token=TOKEN, transport=deployment(release))
    assert checks(report) == {
        "ready": True, "metadata": True, "examples": True, "invalid input": True,
        "no token": True, "wrong token": True,
    }  # fmt: skip
    assert report.failed == ()
    raise_for_failures(report)  # nothing to raise
    (meta,) = [c for c in report.checks if c.name == "metadata"]
    assert "iris-classifier 1.0.0, contract cccccccccccc" in meta.detail


def test_another_release_is_named_by_its_version_and_hashes(release: Release) -> None:
    other = deployment(release, metadata={"version": "2.0.0", "model_sha256": "9" * 64})
    report = verify_live(release, "http://d.test", token=TOKEN, transport=other)
    assert [c.name for c in report.failed] == ["metadata"]
    (failed,) = report.failed
    assert failed.detail.startswith("version: release '1.0.0', service '2.0.0'; model_sha256:")
    with pytest.raises(ParityError) as caught:
        raise_for_failures(report)
    assert (
        "http://d.test is not iris-classifier:abcdefghijklmnop as released" in caught.value.message
    )
    assert "metadata: version: release '1.0.0', service '2.0.0'" in caught.value.message


def test_an_answer_unlike_the_notebook_a_5xx_for_bad_input_and_open_auth_fail(
    release: Release,
) -> None:
    transport = deployment(release, answer=lambda _: {"y": 3.0}, invalid_status=500, token=None)
    report = verify_live(release, "http://d.test", token=TOKEN, transport=transport)
    failed = {c.name: c.detail for c in report.failed}
    assert set(failed) == {"examples", "invalid input", "no token", "wrong token"}
    assert "example 0 via /v1/predict: output.y: notebook 2.0, service 3.0" in failed["examples"]
    assert failed["invalid input"] == "HTTP 500, expected a 4xx"
    assert failed["no token"] == "HTTP 200, expected 401"


def test_a_wrong_token_fails_metadata_and_examples_with_their_status(release: Release) -> None:
    report = verify_live(
        release, "http://d.test", token="not-the-deployment-token", transport=deployment(release)
    )
    failed = {c.name: c.detail for c in report.failed}
    assert failed["metadata"] == "GET /v1/metadata -> HTTP 401"
    assert "POST /v1/predict answered HTTP 401" in failed["examples"]
    assert checks(report)["no token"] and checks(report)["ready"]


def test_a_release_wanting_a_token_needs_one_and_an_unreachable_url_is_named(
    release: Release,
) -> None:
    with pytest.raises(TargetError, match="requires a bearer token") as caught:
        verify_live(release, "http://d.test", token=None, transport=deployment(release))
    assert caught.value.hint and "--token-file" in caught.value.hint

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ServeError, match=r"--url http://d.test: no answer \(ConnectError"):
        verify_live(release, "http://d.test", token=TOKEN, transport=httpx.MockTransport(refuse))


def test_a_token_file_is_read_stripped_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert read_token(path) == TOKEN
    path.write_text("short")
    with pytest.raises(TargetError, match=r"--token-file .*token: holds 5 characters"):
        read_token(path)
    with pytest.raises(TargetError, match="cannot be read"):
        read_token(tmp_path / "missing")


def test_the_cli_prints_a_line_per_check_and_exits_1_naming_what_differs(
    release: Release, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    transport = deployment(release, metadata={"version": "2.0.0"})
    real = live.verify_live
    monkeypatch.setattr(
        live, "verify_live", lambda *a, **k: real(*a, **{**k, "transport": transport})
    )
    token = tmp_path / "token"
    token.write_text(TOKEN)
    assert release.directory is not None
    args = ["verify", str(release.directory), "--url", "http://d.test", "--token-file", str(token)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "✓ examples" in result.output and "✗ metadata" in result.output
    assert "1 check(s) failed" in result.output and "service '2.0.0'" in result.output
    usage = CliRunner().invoke(main, ["verify", "x", "--url", "http://d", "--image", "i"])
    assert usage.exit_code == 2 and "give one" in usage.output
    usage = CliRunner().invoke(main, ["verify", "x", "--token-file", str(token)])
    assert usage.exit_code == 2 and "add --url" in usage.output
