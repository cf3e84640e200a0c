"""`nb2prod ci-workflow`: the GitHub Actions and GitLab CI files pass their real schemas
(check-jsonschema's vendored ones) and actionlint, run the release path in order, and reference
secrets instead of holding them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from nb2prod.cli import main
from nb2prod.errors import Nb2ProdError
from nb2prod.ops.workflows import (
    JOB,
    NEEDS_IMAGE,
    PROMOTE_JOB,
    WorkflowSpec,
    _release_steps,
    find_notebook,
    render_workflow,
)

from tests.conftest import IRIS

BIN = Path(sys.executable).parent
SPEC = WorkflowSpec(
    notebook="notebooks/iris.ipynb",
    install="python -m pip install nb2prod -r requirements.txt",
    workflow_file="nb2prod-release.yml",
)
SCHEMA = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}


def tool(name: str) -> Path:
    path = BIN / name
    if not path.is_file():
        pytest.skip(f"{name} is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return path


def check_schema(kind: str, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the schema it ships (no network)."""
    return subprocess.run(
        [str(tool("check-jsonschema")), "--builtin-schema", SCHEMA[kind], str(path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    """actionlint (with shellcheck on the run: scripts where shellcheck is installed)."""
    return subprocess.run(
        [str(tool("actionlint")), "-no-color", str(path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def written(tmp_path: Path, kind: str, data: Any = None) -> Path:
    path = tmp_path / f"{kind}.yml"
    if data is None:
        path.write_bytes(render_workflow(kind, SPEC))  # type: ignore[arg-type]
    else:
        path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_the_workflow_passes_its_schema(tmp_path: Path, kind: str) -> None:
    proc = check_schema(kind, written(tmp_path, kind))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_github_workflow_passes_actionlint(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        print("shellcheck not installed: actionlint checks the workflow without the scripts")
    proc = actionlint(written(tmp_path, "github"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_broken_workflow_fails_both_checks(tmp_path: Path) -> None:
    """The checks above can fail."""
    github = yaml.safe_load(render_workflow("github", SPEC))
    job = github["jobs"][JOB]
    del job["runs-on"]
    job["steps"][1]["runs"] = job["steps"][1].pop("run")
    broken = written(tmp_path, "github", github)
    assert check_schema("github", broken).returncode != 0
    lint = actionlint(broken)
    assert lint.returncode != 0 and "runs-on" in lint.stdout
    gitlab = yaml.safe_load(render_workflow("gitlab", SPEC))
    gitlab["nb2prod-release"]["script"] = 42
    assert check_schema("gitlab", written(tmp_path, "gitlab", gitlab)).returncode != 0
    shell = yaml.safe_load(render_workflow("github", SPEC))
    job = shell["jobs"][JOB]
    job["steps"][3]["run"] = 'nb2prod check "$NOTEBOOK'  # an unterminated quote
    lint = actionlint(written(tmp_path, "github", shell))
    if shutil.which("shellcheck"):
        assert lint.returncode != 0 and "shellcheck" in lint.stdout


def commands(kind: str) -> list[str]:
    data = yaml.safe_load(render_workflow(kind, SPEC))  # type: ignore[arg-type]
    if kind == "gitlab":
        return list(data["nb2prod-release"]["script"])
    return [step.get("run") or step["uses"] for step in data["jobs"][JOB]["steps"]]


@pytest.mark.parametrize("kind", ["github", "gitlab"])
def test_the_release_path_runs_in_order(kind: str) -> None:
    steps = commands(kind)
    order = [
        "nb2prod check notebooks/iris.ipynb",
        "nb2prod package notebooks/iris.ipynb --out release/current",
        "nb2prod contract diff release/previous release/current --allow-major-bump",
        "nb2prod containerize release/current",
        'nb2prod verify release/current --image "$IMAGE"',
    ]
    positions = [next(i for i, s in enumerate(steps) if wanted in s) for wanted in order]
    assert positions == sorted(positions)
    assert not any("--no-gates" in s or "--allow-breaking" in s for s in steps)
    if kind == "github":
        assert steps[-1].startswith("actions/upload-artifact@")
        assert any(s.startswith("actions/download-artifact@") for s in steps)
        job = yaml.safe_load(render_workflow("github", SPEC))["jobs"][JOB]
        uploaded = [
            s["with"]["path"] for s in job["steps"] if "upload-artifact" in s.get("uses", "")
        ]
    else:
        data = yaml.safe_load(render_workflow("gitlab", SPEC))
        uploaded = data["nb2prod-release"]["artifacts"]["paths"]
    # the release and the deployment files made for the job's image both leave the job
    assert {p.rstrip("/") for p in uploaded} == {"release/current", "release/current-deploy"}


SECRET_NAMES = ("token", "secret", "password", "credential")


def inline_secrets(node: Any, key: str = "") -> list[str]:
    """Values under secret-looking keys that are not a reference (${{ ... }} or $VARIABLE)."""
    if isinstance(node, dict):
        return [found for k, v in node.items() for found in inline_secrets(v, str(k))]
    if isinstance(node, list):
        return [found for item in node for found in inline_secrets(item, key)]
    if any(word in key.lower() for word in SECRET_NAMES):
        value = str(node)
        if not (value.startswith("${{") or value.startswith("$")):
            return [f"{key}: {value}"]
    return []


def test_secrets_are_referenced_never_written_in() -> None:
    github = yaml.safe_load(render_workflow("github", SPEC))
    gitlab = yaml.safe_load(render_workflow("gitlab", SPEC))
    assert inline_secrets(github) == [] and inline_secrets(gitlab) == []
    job = github["jobs"][JOB]
    assert job["steps"][4]["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert '"JOB-TOKEN: $CI_JOB_TOKEN"' in "".join(gitlab["nb2prod-release"]["script"])
    job["env"]["NB2PROD_API_TOKEN"] = "hunter2"  # the check above can fail
    assert inline_secrets(github) == ["NB2PROD_API_TOKEN: hunter2"]


def test_the_notebook_is_found_or_asked_for(tmp_path: Path) -> None:
    with pytest.raises(Nb2ProdError, match="no notebook"):
        find_notebook(tmp_path)
    (tmp_path / "notebooks").mkdir()
    shutil.copy(IRIS, tmp_path / "notebooks" / "iris.ipynb")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    shutil.copy(IRIS, tmp_path / ".ipynb_checkpoints" / "iris-checkpoint.ipynb")
    assert find_notebook(tmp_path) == "notebooks/iris.ipynb"
    shutil.copy(IRIS, tmp_path / "other.ipynb")
    with pytest.raises(Nb2ProdError, match="2 notebooks"):
        find_notebook(tmp_path)


def test_ci_workflow_writes_the_file_and_never_overwrites_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(IRIS, tmp_path / "iris.ipynb")
    (tmp_path / "requirements.txt").write_text("scikit-learn\n")
    result = CliRunner().invoke(main, ["ci-workflow", "github"])
    assert result.exit_code == 0, result.output
    path = tmp_path / ".github" / "workflows" / "nb2prod-release.yml"
    text = path.read_text()
    assert "nb2prod check iris.ipynb" in text and "-r requirements.txt" in text
    assert "/nb2prod-release.yml/runs?" in text  # the API finds earlier runs by this file's name
    path.write_text("mine\n")
    again = CliRunner().invoke(main, ["ci-workflow", "github"])
    assert again.exit_code == 1 and "exists" in again.output
    assert path.read_text() == "mine\n"
    forced = CliRunner().invoke(main, ["ci-workflow", "github", "--force"])
    assert forced.exit_code == 0 and path.read_text() == text
    gitlab = CliRunner().invoke(
        main, ["ci-workflow", "gitlab", "--notebook", "iris.ipynb", "--install", "make venv"]
    )
    assert gitlab.exit_code == 0, gitlab.output
    assert "- make venv" in (tmp_path / ".gitlab-ci.yml").read_text()
    assert not list(tmp_path.rglob("*.partial-*"))


ON_TAG = "startsWith(github.ref, 'refs/tags/v')"
SIGN = 'nb2prod sign "$RELEASE" --key "$KEY_FILE"'
PUSH = 'nb2prod containerize "$RELEASE" --backend podman --push "$PUSH_IMAGE"'
PROMOTE = 'nb2prod verify "$RELEASE" --url "$NB2PROD_URL" --token-file "$TOKEN_FILE"'
AUDIT = 'pip-audit --requirement "$RELEASE/requirements.lock" --require-hashes --disable-pip'


def test_github_releases_on_version_tags_signs_pushes_and_promotes() -> None:
    data = yaml.safe_load(render_workflow("github", SPEC))
    assert data["on"]["push"]["tags"] == ["v*"] and data["permissions"]["packages"] == "write"
    release = data["jobs"][JOB]
    steps = release["steps"]
    assert release["env"]["RELEASE"] == "release/current"

    def step(text: str) -> int:
        return next(i for i, s in enumerate(steps) if text in s.get("run", ""))

    # audited on every run; signed before the image is built (the image carries the signature),
    # pushed once it answered like the notebook, deploy/ made for the pushed image
    order = [step("nb2prod package"), step(AUDIT), step(SIGN), step("--tag \"$IMAGE\""),
             step('--image "$IMAGE"'), step(PUSH), step("nb2prod deploy-files")]  # fmt: skip
    assert order == sorted(order)
    assert "if" not in steps[step(AUDIT)]
    for index in (step(SIGN), step(PUSH)):
        assert steps[index]["if"] == ON_TAG  # pull requests never see the secrets
    assert steps[step(SIGN)]["env"]["NB2PROD_SIGNING_KEY"] == "${{ secrets.NB2PROD_SIGNING_KEY }}"
    assert "${{ secrets.NB2PROD_REGISTRY_PASSWORD" in steps[step(PUSH)]["env"]["REGISTRY_PASSWORD"]
    assert '--image "${PUSH_IMAGE:-$IMAGE}"' in steps[step("nb2prod deploy-files")]["run"]
    promote = data["jobs"][PROMOTE_JOB]
    assert promote["needs"] == JOB and promote["if"] == ON_TAG
    assert promote["environment"] == "production"
    (check,) = [s for s in promote["steps"] if PROMOTE in s.get("run", "")]
    assert check["env"]["NB2PROD_API_TOKEN"] == "${{ secrets.NB2PROD_API_TOKEN }}"
    fetched = [s for s in promote["steps"] if "download-artifact" in s.get("uses", "")]
    assert fetched[0]["with"] == {"name": "nb2prod-release", "path": "release/current"}


def test_gitlab_releases_on_version_tags_signs_pushes_and_promotes() -> None:
    data = yaml.safe_load(render_workflow("gitlab", SPEC))
    assert data["stages"] == ["release", "promote"]
    script = data[JOB]["script"]

    def line(text: str) -> int:
        return next(i for i, s in enumerate(script) if text in s)

    order = [line("nb2prod package"), line(AUDIT), line(SIGN), line('--tag "$IMAGE"'),
             line('--image "$IMAGE"'), line(PUSH), line("nb2prod deploy-files")]  # fmt: skip
    assert order == sorted(order)
    for index in (line(SIGN), line(PUSH)):
        assert script[index].startswith('case "${CI_COMMIT_TAG:-}" in v*)')
    assert "$CI_REGISTRY_IMAGE" in script[line(PUSH)]
    promote = data[PROMOTE_JOB]
    assert promote["rules"] == [{"if": "$CI_COMMIT_TAG =~ /^v/"}] and promote["needs"] == [JOB]
    assert any(PROMOTE in s for s in promote["script"])


def run_shell(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A generated script under bash, with an `nb2prod` that records its arguments and the
    key or token file it was given (content and mode)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nb2prod"
    fake.write_text(
        '#!/bin/bash\necho "args: $*"\n'
        'for a in "$@"; do [ -f "$a" ] && echo "file: $(stat -c %a "$a") $(cat "$a")"; done\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "RELEASE": "release/current", **env},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_the_signing_key_and_the_token_reach_nb2prod_as_private_files(tmp_path: Path) -> None:
    steps = _release_steps("-registry.example.internal/acme/iris", "v1.0.0")
    key_file = tmp_path / "signing.key"
    signed = run_shell(
        steps["sign"], tmp_path, NB2PROD_SIGNING_KEY="-----BEGIN KEY-----", KEY_FILE=str(key_file)
    )
    assert signed.returncode == 0, signed.stderr
    assert f"args: sign release/current --key {key_file}" in signed.stdout
    assert "file: 600 -----BEGIN KEY-----" in signed.stdout  # only the job's user reads it
    assert not key_file.exists()  # removed after signing
    missing = run_shell(steps["sign"], tmp_path, KEY_FILE=str(key_file))
    assert missing.returncode == 1 and "NB2PROD_SIGNING_KEY is empty" in missing.stderr
    token_file = tmp_path / "token"
    promoted = run_shell(
        steps["promote"], tmp_path, NB2PROD_URL="https://iris.example.com",
        NB2PROD_API_TOKEN="a-token-of-20-chars!", TOKEN_FILE=str(token_file),
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    assert f"--url https://iris.example.com --token-file {token_file}" in promoted.stdout
    assert "file: 600 a-token-of-20-chars!" in promoted.stdout
    nowhere = run_shell(steps["promote"], tmp_path, NB2PROD_API_TOKEN="x" * 20)
    assert nowhere.returncode == 1 and "NB2PROD_URL is empty" in nowhere.stderr


def test_the_push_logs_in_to_the_images_registry_and_pushes_the_tag(tmp_path: Path) -> None:
    podman = tmp_path / "bin" / "podman"
    podman.parent.mkdir()
    podman.write_text('#!/bin/bash\necho "podman: $* password=$(cat)"\n')
    podman.chmod(0o755)
    push = _release_steps(NEEDS_IMAGE, "$GITHUB_REF_NAME")["push"]
    env = {"GITHUB_REPOSITORY": "Acme/Iris", "GITHUB_REF_NAME": "v1.2.0",
           "REGISTRY_USER": "bot", "REGISTRY_PASSWORD": "registry-secret-1234"}  # fmt: skip
    # GitHub: no registry is assumed; without the variable the step fails saying what to set
    unset = run_shell(push, tmp_path, **env)
    assert unset.returncode != 0 and "set the variable NB2PROD_IMAGE" in unset.stderr
    # a registry of one's own (a repository variable)
    own = run_shell(push, tmp_path, **env, NB2PROD_IMAGE="registry.example.com:5000/ml/iris")
    assert own.returncode == 0, own.stderr
    assert (
        "podman: login --username bot --password-stdin registry.example.com:5000 "
        "password=registry-secret-1234" in own.stdout
    )
    assert "--password-stdin registry.example.com:5000 " in own.stdout
    assert "--push registry.example.com:5000/ml/iris:v1.2.0" in own.stdout
