"""``nb2prod ci-workflow``: a CI workflow for the release path, GitHub Actions or GitLab CI.

One job, in a Debian 12 + Python 3.11 container (the platform nb2prod's lock and base image
target): check the notebook, fetch the last released version (the release artifact of the newest
successful run on the default branch), package with the quality gates enforced (package compares
the contract and metrics with that release beside it), diff the contracts (a breaking change fails
the job unless the version is a new major one), build the image, verify it answers like the
notebook, and upload the release as an artifact. Secrets are referenced (``${{ github.token }}``,
``$CI_JOB_TOKEN``), never written in.

Built as data and dumped with sorted keys like every other generated file (docs/deploy.md).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..adapters.container import DEBIAN_PACKAGES
from ..errors import Nb2ProdError
from ..release.writer import canonical_yaml, write_atomic
from ..version import __version__

Kind = Literal["github", "gitlab"]
DEFAULT_OUT: dict[str, str] = {
    "github": ".github/workflows/nb2prod-release.yml",
    "gitlab": ".gitlab-ci.yml",
}
ARTIFACT = "nb2prod-release"
DEPLOY_ARTIFACT = "nb2prod-deploy"  # deploy-files for the image the job built
JOB = "nb2prod-release"
CONTAINER = "python:3.11-bookworm"  # Debian 12 with Python 3.11, from the Docker Official Images
CURRENT = "release/current"  # where the job packages; package finds the previous release beside it
PREVIOUS = "release/previous"


@dataclass(frozen=True)
class WorkflowSpec:
    notebook: str  # relative to the repository root, as the job sees it
    install: str  # a shell command installing nb2prod and the notebook's packages
    workflow_file: str  # the file's name (GitHub's API finds earlier runs by it)


def default_install(root: Path) -> str:
    """nb2prod at this version, plus requirements.txt when the repository has one."""
    command = f"python -m pip install nb2prod=={__version__}"
    if (root / "requirements.txt").is_file():
        command += " -r requirements.txt"
    return command


def find_notebook(root: Path) -> str:
    """The one notebook in the repository (outside hidden, virtual-env and output directories)."""
    skip = {"dist", "release", "node_modules", "site-packages", "__pycache__"}
    found = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*.ipynb")
        if not any(part.startswith(".") or part in skip for part in path.relative_to(root).parts)
    )
    if len(found) != 1:
        which = f"{len(found)} notebooks ({', '.join(found[:5])})" if found else "no notebook"
        raise Nb2ProdError(
            f"{root}: {which}; say which one the workflow packages",
            hint="Pass --notebook PATH (relative to the repository root).",
        )
    return found[0]


def _steps_text(spec: WorkflowSpec) -> dict[str, str]:
    """The shell commands both workflows run, in order."""
    notebook = shlex.quote(spec.notebook)
    return {
        "tools": "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        f"--no-install-recommends {DEBIAN_PACKAGES}",
        "install": spec.install,
        "check": f"nb2prod check {notebook}",
        "package": f"nb2prod package {notebook} --out {CURRENT}",
        "diff": f"nb2prod contract diff {PREVIOUS} {CURRENT} --allow-major-bump",
        "image": "nb2prod base-image && nb2prod containerize "
        f'{CURRENT} --backend podman --tag "$IMAGE"',
        "verify": f'nb2prod verify {CURRENT} --image "$IMAGE"',
        "deploy": f'nb2prod deploy-files {CURRENT} --image "$IMAGE" --out {CURRENT}-deploy',
    }


def github_workflow(spec: WorkflowSpec) -> dict[str, Any]:
    run = _steps_text(spec)
    last_run = (
        # the newest successful run of this workflow on the default branch, if any
        'url="$GITHUB_API_URL/repos/$GITHUB_REPOSITORY/actions/workflows/'
        f'{spec.workflow_file}/runs?branch=$DEFAULT_BRANCH&status=success&per_page=1"\n'
        'id=$(curl -fsSL -H "Authorization: Bearer $GH_TOKEN" "$url" | python3 -c '
        '\'import json, sys; runs = json.load(sys.stdin)["workflow_runs"]; '
        'print(runs[0]["id"] if runs else "")\')\n'
        'echo "run_id=$id" >> "$GITHUB_OUTPUT"\n'
    )
    return {
        "name": "nb2prod release",
        "on": {
            "push": {"branches": ["main"]},
            "pull_request": {},
            "workflow_dispatch": {},
        },
        "permissions": {"contents": "read", "actions": "read"},
        "jobs": {
            JOB: {
                "runs-on": "ubuntu-latest",
                # podman builds and runs the image inside the job's container
                "container": {"image": CONTAINER, "options": "--privileged"},
                "defaults": {"run": {"shell": "bash"}},  # bash -eo pipefail
                "env": {
                    "BENTOML_HOME": "${{ github.workspace }}/.bentoml",
                    "BENTOML_DO_NOT_TRACK": "true",
                    "IMAGE": "localhost/nb2prod-release:${{ github.sha }}",
                },
                "steps": [
                    {"uses": "actions/checkout@v5"},
                    {"name": "Container tools from Debian's packages", "run": run["tools"]},
                    {"name": "nb2prod and the notebook's packages", "run": run["install"]},
                    {"name": "Check the notebook", "run": run["check"]},
                    {
                        "name": "Find the last release",
                        "id": "last",
                        "env": {
                            "GH_TOKEN": "${{ github.token }}",
                            "DEFAULT_BRANCH": "${{ github.event.repository.default_branch }}",
                        },
                        "run": last_run,
                    },
                    {
                        "name": "Fetch the last release",
                        "if": "steps.last.outputs.run_id != ''",
                        "uses": "actions/download-artifact@v7",
                        "with": {
                            "name": ARTIFACT,
                            "path": PREVIOUS,
                            "run-id": "${{ steps.last.outputs.run_id }}",
                            "github-token": "${{ github.token }}",
                        },
                    },
                    {
                        "name": "Package (quality gates enforced, compared with the last release)",
                        "run": run["package"],
                    },
                    {
                        "name": "Contract diff (breaking fails unless the version is a new major)",
                        "if": "steps.last.outputs.run_id != ''",
                        "run": run["diff"],
                    },
                    {"name": "Build the image", "run": run["image"]},
                    {"name": "Verify the image answers like the notebook", "run": run["verify"]},
                    {"name": "Deployment files for the image", "run": run["deploy"]},
                    {
                        "name": "Upload the release",
                        "uses": "actions/upload-artifact@v6",
                        "with": {
                            "name": ARTIFACT,
                            "path": CURRENT,
                            "if-no-files-found": "error",
                        },
                    },
                    {
                        # an artifact of its own: the release artifact stays the release
                        # directory, which the next run fetches as release/previous
                        "name": "Upload the deployment files",
                        "uses": "actions/upload-artifact@v6",
                        "with": {
                            "name": DEPLOY_ARTIFACT,
                            "path": f"{CURRENT}-deploy",
                            "if-no-files-found": "error",
                        },
                    },
                ],
            }
        },
    }


def gitlab_workflow(spec: WorkflowSpec) -> dict[str, Any]:
    run = _steps_text(spec)
    fetch = (
        # this job's artifacts from the newest successful pipeline on the default branch
        'url="$CI_API_V4_URL/projects/$CI_PROJECT_ID/jobs/artifacts/$CI_DEFAULT_BRANCH/'
        'download?job=$CI_JOB_NAME"\n'
        'if curl -fsSL --header "JOB-TOKEN: $CI_JOB_TOKEN" --output last.zip "$url"; then\n'
        f"  python3 -m zipfile -e last.zip last && mv last/{CURRENT} {PREVIOUS}\n"
        "else\n"
        '  echo "no earlier release: this is the first"\n'
        "fi\n"
    )
    return {
        "stages": ["release"],
        JOB: {
            "stage": "release",
            "image": CONTAINER,  # needs a runner that allows privileged containers (podman)
            "variables": {
                "BENTOML_HOME": "$CI_PROJECT_DIR/.bentoml",
                "BENTOML_DO_NOT_TRACK": "true",
                "IMAGE": "localhost/nb2prod-release:$CI_COMMIT_SHA",
            },
            "script": [
                run["tools"],
                run["install"],
                run["check"],
                f"mkdir -p {Path(PREVIOUS).parent}",
                fetch,
                run["package"],
                f"if [ -d {PREVIOUS} ]; then {run['diff']}; fi",
                run["image"],
                run["verify"],
                run["deploy"],
            ],
            "artifacts": {"name": ARTIFACT, "paths": [f"{CURRENT}/", f"{CURRENT}-deploy/"]},
        },
    }


def render_workflow(kind: Kind, spec: WorkflowSpec) -> bytes:
    data = github_workflow(spec) if kind == "github" else gitlab_workflow(spec)
    header = (
        f"# {'GitHub Actions' if kind == 'github' else 'GitLab CI'} workflow generated by "
        f"nb2prod {__version__} (`nb2prod ci-workflow {kind}`) for {spec.notebook}; "
        "see docs/deploy.md\n"
    )
    return canonical_yaml(data, header)


def write_workflow(
    kind: Kind,
    *,
    root: Path,
    notebook: str | None,
    install: str | None,
    out: Path | None,
    force: bool,
) -> Path:
    """Write the workflow into the repository at ``root``; an existing file only with ``force``."""
    target = out or root / DEFAULT_OUT[kind]
    if target.exists() and not force:
        raise Nb2ProdError(
            f"{target}: exists; nb2prod does not overwrite it",
            hint="Pass --force to replace it, or --out FILE to write elsewhere"
            + (" and `include:` that file from .gitlab-ci.yml." if kind == "gitlab" else "."),
        )
    spec = WorkflowSpec(
        notebook=notebook or find_notebook(root),
        install=install or default_install(root),
        workflow_file=target.name,
    )
    write_atomic(target, render_workflow(kind, spec))
    return target
