"""``nb2prod ci-workflow``: a CI workflow for the release path, GitHub Actions or GitLab CI.

One job, in a Debian 12 + Python 3.11 container (the platform nb2prod's lock and base image
target): check the notebook, fetch the last released version (the release artifact of the newest
successful run on the default branch), package with the quality gates enforced (package compares
the contract and metrics with that release beside it), diff the contracts (a breaking change fails
the job unless the version is a new major one), build the image, verify it answers like the
notebook, and upload the release as an artifact. Every run audits the lock with ``pip-audit``.

On a version tag (``v*``) the release goes on to production: it is signed with the key of a CI
secret (``nb2prod sign``) before the image is built, the image is pushed to a registry
(``nb2prod containerize --push``) and deploy/ made for the pushed image; a second job, in the
``production`` environment, checks the live deployment with ``nb2prod verify --url`` (the
promotion). Secrets are referenced (``${{ github.token }}``, ``${{ secrets.NB2PROD_SIGNING_KEY }}``,
``$CI_JOB_TOKEN``), never written in; key and token reach nb2prod as files only the job can read.

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
PROMOTE_JOB = "nb2prod-promote"  # on version tags: the live deployment checked
VERSION_TAGS = "v*"  # the tags that release to production (GitLab: $CI_COMMIT_TAG =~ /^v/)
ON_TAG = "startsWith(github.ref, 'refs/tags/v')"
ENVIRONMENT = "production"
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
        # on a version tag, deploy/ is for the pushed image
        "deploy": f'nb2prod deploy-files {CURRENT} --image "${{PUSH_IMAGE:-$IMAGE}}" '
        f"--out {CURRENT}-deploy",
        # the locked packages against the advisories (needs the network, as the job has):
        # exactly the pinned set, hashed, without resolving anything
        "audit": "python -m pip install pip-audit && pip-audit --requirement "
        '"$RELEASE/requirements.lock" --require-hashes --disable-pip --progress-spinner off',
    }


def _secret_file(variable: str, file_variable: str, what: str) -> str:
    """Shell lines that write a secret variable to a file only this job can read."""
    return (
        f'if [ -z "${{{variable}:-}}" ]; then\n'
        f'  echo "{variable} is empty: set it as a CI secret ({what})" >&2; exit 1\n'
        "fi\n"
        f'(umask 077 && printf \'%s\\n\' "${variable}" > "${file_variable}")\n'
    )


# GitHub has no registry of its own to name here: NB2PROD_IMAGE (a repository variable) says where
NEEDS_IMAGE = "?set the variable NB2PROD_IMAGE to REGISTRY/NAME, where release images are pushed"


def _release_steps(image_default: str, tag: str) -> dict[str, str]:
    """The version-tag commands: sign, push (logged in to the registry of the image), promote.
    ``image_default`` is the shell expansion after ``NB2PROD_IMAGE:`` (``-DEFAULT`` or ``?...``)."""
    return {
        "sign": _secret_file("NB2PROD_SIGNING_KEY", "KEY_FILE", "the release signing key")
        + 'nb2prod sign "$RELEASE" --key "$KEY_FILE"\n'
        'rm -f "$KEY_FILE"\n',
        "push": f'PUSH_IMAGE="${{NB2PROD_IMAGE:{image_default}}}:{tag}"\n'
        'printf \'%s\' "$REGISTRY_PASSWORD" | podman login --username "$REGISTRY_USER" '
        '--password-stdin "${PUSH_IMAGE%%/*}"\n'
        'nb2prod containerize "$RELEASE" --backend podman --push "$PUSH_IMAGE"\n',
        "promote": 'if [ -z "${NB2PROD_URL:-}" ]; then\n'
        '  echo "NB2PROD_URL is empty: set it to the URL the tag was deployed at" >&2; exit 1\n'
        "fi\n"
        + _secret_file("NB2PROD_API_TOKEN", "TOKEN_FILE", "the bearer token of the deployment")
        + 'nb2prod verify "$RELEASE" --url "$NB2PROD_URL" --token-file "$TOKEN_FILE"\n',
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
    tagged = _release_steps(NEEDS_IMAGE, "$GITHUB_REF_NAME")
    return {
        "name": "nb2prod release",
        "on": {
            "push": {"branches": ["main"], "tags": [VERSION_TAGS]},
            "pull_request": {},
            "workflow_dispatch": {},
        },
        # packages: write lets github.token push to the repository's own container registry
        "permissions": {"contents": "read", "actions": "read", "packages": "write"},
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
                    "RELEASE": CURRENT,
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
                    {"name": "Audit the locked packages (pip-audit)", "run": run["audit"]},
                    {
                        "name": "Sign the release (version tags)",
                        "if": ON_TAG,
                        "env": {
                            "NB2PROD_SIGNING_KEY": "${{ secrets.NB2PROD_SIGNING_KEY }}",
                            "KEY_FILE": "${{ runner.temp }}/nb2prod-signing.key",
                        },
                        "run": tagged["sign"],
                    },
                    {"name": "Build the image", "run": run["image"]},
                    {"name": "Verify the image answers like the notebook", "run": run["verify"]},
                    {
                        "name": "Push the image (version tags)",
                        "if": ON_TAG,
                        "env": {
                            "NB2PROD_IMAGE": "${{ vars.NB2PROD_IMAGE }}",
                            "REGISTRY_USER": "${{ vars.NB2PROD_REGISTRY_USER || github.actor }}",
                            "REGISTRY_PASSWORD": (
                                "${{ secrets.NB2PROD_REGISTRY_PASSWORD || github.token }}"
                            ),
                        },
                        # the later steps (deploy-files) use the pushed image
                        "run": tagged["push"] + 'echo "PUSH_IMAGE=$PUSH_IMAGE" >> "$GITHUB_ENV"\n',
                    },
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
            },
            PROMOTE_JOB: {
                # a version tag, once its image is deployed: the live service is checked against
                # the release (the environment's protection rules can make it wait for a person)
                "needs": JOB,
                "if": ON_TAG,
                "runs-on": "ubuntu-latest",
                "container": {"image": CONTAINER},
                "environment": ENVIRONMENT,
                "defaults": {"run": {"shell": "bash"}},
                "env": {"RELEASE": CURRENT, "BENTOML_DO_NOT_TRACK": "true"},
                "steps": [
                    {"uses": "actions/checkout@v5"},
                    {"name": "nb2prod and the notebook's packages", "run": run["install"]},
                    {
                        "name": "Fetch the release",
                        "uses": "actions/download-artifact@v7",
                        "with": {"name": ARTIFACT, "path": CURRENT},
                    },
                    {
                        "name": "Promote: the live deployment answers like the notebook",
                        "env": {
                            "NB2PROD_URL": "${{ vars.NB2PROD_URL }}",
                            "NB2PROD_API_TOKEN": "${{ secrets.NB2PROD_API_TOKEN }}",
                            "TOKEN_FILE": "${{ runner.temp }}/nb2prod-token",
                        },
                        "run": tagged["promote"],
                    },
                ],
            },
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
    tagged = _release_steps("-$CI_REGISTRY_IMAGE", "$CI_COMMIT_TAG")

    def on_tag(command: str) -> str:
        body = "".join(f"  {line}\n" for line in command.splitlines())
        return f'case "${{CI_COMMIT_TAG:-}}" in v*)\n{body}  ;;\nesac\n'

    return {
        "stages": ["release", "promote"],
        JOB: {
            "stage": "release",
            "image": CONTAINER,  # needs a runner that allows privileged containers (podman)
            "variables": {
                "BENTOML_HOME": "$CI_PROJECT_DIR/.bentoml",
                "BENTOML_DO_NOT_TRACK": "true",
                "IMAGE": "localhost/nb2prod-release:$CI_COMMIT_SHA",
                "RELEASE": CURRENT,
                # GitLab's own registry unless NB2PROD_IMAGE and these are set as CI variables
                "REGISTRY_USER": "$CI_REGISTRY_USER",
                "REGISTRY_PASSWORD": "$CI_REGISTRY_PASSWORD",
            },
            "script": [
                run["tools"],
                run["install"],
                run["check"],
                f"mkdir -p {Path(PREVIOUS).parent}",
                fetch,
                run["package"],
                f"if [ -d {PREVIOUS} ]; then {run['diff']}; fi",
                run["audit"],
                on_tag('KEY_FILE="$(mktemp)"\n' + tagged["sign"]),
                run["image"],
                run["verify"],
                on_tag(tagged["push"] + "export PUSH_IMAGE\n"),
                run["deploy"],
            ],
            "artifacts": {"name": ARTIFACT, "paths": [f"{CURRENT}/", f"{CURRENT}-deploy/"]},
        },
        PROMOTE_JOB: {
            # a version tag, once its image is deployed: the live service checked against the
            # release (NB2PROD_URL and NB2PROD_API_TOKEN are CI variables)
            "stage": "promote",
            "image": CONTAINER,
            "rules": [{"if": "$CI_COMMIT_TAG =~ /^v/"}],
            "needs": [JOB],  # and its artifacts: the release
            "environment": {"name": ENVIRONMENT},
            "variables": {"RELEASE": CURRENT, "BENTOML_DO_NOT_TRACK": "true"},
            "script": [run["install"], 'TOKEN_FILE="$(mktemp)"\n' + tagged["promote"]],
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
