"""``nb2prod verify RELEASE --url URL``: a running deployment checked against its release.

Nothing is started: the deployment at URL (a port-forward, an ingress, a ``podman kube play``
pod) is asked, with the release's bearer token where the release wants one, and must be this
release: ``/v1/metadata`` says the release's name, version, bento tag and hashes (contract,
model, notebook) and everything else service/metadata.json records; every example answers as
in the notebook, alone and in one batch (the comparison of :mod:`nb2prod.pipeline.verify`);
input breaking the contract gets a 4xx; a request without a token, and one with a wrong token,
get 401. Each check is one :class:`Check`; :func:`raise_for_failures` names the ones that failed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..errors import ParityError, ServeError, TargetError
from ..release.reader import Release
from ..runtime.auth import MIN_TOKEN_LENGTH
from .verify import INVALID_INPUT, compare_examples, expectations

SHOWN = 5  # differences shown per check


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False  # not applicable to this release (counts as passed)


@dataclass(frozen=True)
class LiveReport:
    url: str
    bento_tag: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)


def read_token(path: Path) -> str:
    """The bearer token in ``path`` (``--token-file``), surrounding white space removed."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TargetError(
            f"--token-file {path}: cannot be read ({exc.strerror or exc})",
            hint="Give the file holding the deployment's bearer token (the Secret's `token`).",
        ) from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise TargetError(
            f"--token-file {path}: holds {len(token)} characters; a token has at least "
            f"{MIN_TOKEN_LENGTH}",
            hint="Give the file with the token the deployment was given, not its name.",
        )
    return token


def verify_live(
    release: Release,
    url: str,
    *,
    token: str | None,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = 30.0,
) -> LiveReport:
    """Check the deployment at ``url`` against ``release`` (its files checked first)."""
    release.check_integrity()
    wants_token = release.metadata.release.auth == "token"
    if wants_token and token is None:
        raise TargetError(
            f'{release.bento_tag} requires a bearer token (auth = "token"), and none was given',
            hint="Add --token-file FILE with the deployment's token (e.g. `kubectl get secret "
            "NAME -o jsonpath='{.data.token}' | base64 -d > token`).",
        )
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    options: dict[str, Any] = {"base_url": base, "timeout": timeout_s, "transport": transport}
    try:
        with (
            httpx.Client(headers=headers, **options) as client,
            httpx.Client(**options) as bare,
        ):
            checks = [
                _ready(bare),
                _metadata(client, release),
                _examples(client, release),
                _invalid(client),
                *_auth(bare, release),
            ]
    except httpx.TransportError as exc:
        raise ServeError(
            f"--url {url}: no answer ({type(exc).__name__}: {exc})",
            hint="Is the deployment running and reachable from here? For a cluster, "
            "`kubectl port-forward svc/NAME 3000:80` and --url http://127.0.0.1:3000.",
        ) from None
    return LiveReport(base, release.bento_tag, tuple(checks))


def raise_for_failures(report: LiveReport) -> None:
    """A :class:`ParityError` naming every failed check and what differs."""
    if not report.failed:
        return
    shown = "\n".join(f"  {c.name}: {c.detail}" for c in report.failed)
    raise ParityError(
        f"{report.url} is not {report.bento_tag} as released: {len(report.failed)} check(s) "
        f"failed:\n{shown}",
        hint="Deploy this release's image (deploy-files pins it by digest) or verify against "
        "the release that is deployed; the lines above say what differs.",
    )


def _ready(client: httpx.Client) -> Check:
    response = client.get("/readyz")
    return Check("ready", response.status_code == 200, f"/readyz -> HTTP {response.status_code}")


def _metadata(client: httpx.Client, release: Release) -> Check:
    """Every field /v1/metadata should answer, as the release records it."""
    response = client.get("/v1/metadata")
    if response.status_code != 200:
        return Check("metadata", False, f"GET /v1/metadata -> HTTP {response.status_code}")
    try:
        served = response.json()
    except ValueError:
        served = None
    if not isinstance(served, dict):
        return Check("metadata", False, "GET /v1/metadata did not answer a JSON object")
    expected = {**release.metadata.release.model_dump(mode="json"), "bento_tag": release.bento_tag}
    differing = [key for key in sorted(expected) if served.get(key) != expected[key]]
    # the identity first: a version or a hash says more than an evaluation summary
    first = ("version", "contract_sha256", "model_sha256", "notebook_sha256", "bento_tag", "name")
    differing.sort(key=lambda key: (key not in first, first.index(key) if key in first else 0))
    if differing:
        shown = "; ".join(
            f"{key}: release {_short(expected[key])}, service {_short(served.get(key))}"
            for key in differing[:SHOWN]
        )
        more = f" (and {len(differing) - SHOWN} more)" if len(differing) > SHOWN else ""
        return Check("metadata", False, shown + more)
    return Check(
        "metadata",
        True,
        f"{release.metadata.release.name} {release.metadata.release.version}, contract "
        f"{expected['contract_sha256'][:12]}, model {expected['model_sha256'][:12]}, "
        f"{len(expected)} fields as released",
    )


def _examples(client: httpx.Client, release: Release) -> Check:
    expected = expectations(release.examples, release.metadata.release.fallback.min_confidence)
    try:
        answers = compare_examples(client, expected)
    except ParityError as exc:
        return Check("examples", False, exc.message)
    found = [str(d) for d in answers.differences] + [str(d) for d in answers.single_batch]
    if found:
        more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
        return Check("examples", False, "; ".join(found[:SHOWN]) + more)
    return Check("examples", True, f"{len(expected)} examples answer as in the notebook "
                 "(single and batch)")  # fmt: skip


def _invalid(client: httpx.Client) -> Check:
    status = client.post("/v1/predict", json=INVALID_INPUT).status_code
    return Check("invalid input", 400 <= status < 500, f"HTTP {status}, expected a 4xx")


def _auth(bare: httpx.Client, release: Release) -> list[Check]:
    if release.metadata.release.auth != "token":
        return [Check("no token", True, "the release needs no token (auth = none)", skipped=True)]
    body = dict(release.examples[0].input) if release.examples else {}
    wrong = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
    checks = []
    for name, headers in (("no token", {}), ("wrong token", wrong)):
        status = bare.post("/v1/predict", json=body, headers=headers).status_code
        checks.append(Check(name, status == 401, f"HTTP {status}, expected 401"))
    return checks


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
