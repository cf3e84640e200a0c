"""Every failure nb2prod reports to a user.

One root exception carries a message and an optional hint; each kind of failure is a documented
subclass so callers (and tests) can tell them apart. The CLI prints ``error: <message>`` and
``hint: <hint>`` and exits non-zero; nothing else should reach the user as a traceback.
"""

from __future__ import annotations


class Nb2ProdError(Exception):
    """Root of every error nb2prod raises on purpose."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[Nb2ProdError], tuple[str, str | None]]:
        # crosses process boundaries (scoring workers) with its hint
        return type(self), (self.message, self.hint)


class NotebookError(Nb2ProdError):
    """The notebook cannot be read, or its annotations are wrong (unknown role, two roles, ...)."""

    def __init__(self, message: str, hint: str | None = None, *, cell: int | None = None) -> None:
        super().__init__(message, hint)
        self.cell = cell


class ConfigError(Nb2ProdError):
    """nb2prod.toml / [tool.nb2prod] is unreadable or has an unknown or invalid key."""


class ExecutionError(Nb2ProdError):
    """A cell raised while the notebook ran; carries the cell index, role and exception."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        cell_index: int | None = None,
        ename: str | None = None,
        evalue: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue


class CaptureError(Nb2ProdError):
    """The notebook ran, but what the service needs (model, examples, outputs) is missing or wrong."""


class LockError(Nb2ProdError):
    """The environment could not be locked (resolver failure, missing distribution)."""


class BuildError(Nb2ProdError):
    """``bentoml build`` failed."""


class ServeError(Nb2ProdError):
    """The service could not be started or did not become ready."""


class ParityError(Nb2ProdError):
    """The served bento answered differently from the notebook."""


class TargetError(Nb2ProdError):
    """A TARGET (release directory, contract.json or bento tag) cannot be resolved."""


class MissingToolError(Nb2ProdError):
    """An optional tool nb2prod needs is not installed; the hint says how to get it."""


class GateError(Nb2ProdError):
    """A quality gate failed, or names a metric the notebook did not produce."""


class ParameterError(Nb2ProdError):
    """A ``-p NAME VALUE`` names no parameter of the notebook."""


class ContractError(Nb2ProdError):
    """The contract breaks callers of the previous release without a major version bump."""


class ContainerError(Nb2ProdError):
    """An image could not be built, inspected or run (build failure, unknown backend, no base)."""


class ReleaseExistsError(Nb2ProdError):
    """The version is already released with another notebook, model or contract (no --replace)."""


class LoadTestError(Nb2ProdError):
    """``nb2prod loadtest`` could not run its load (the service or Locust failed)."""


class DeployError(Nb2ProdError):
    """Deployment files could not be made or written (an --out directory that is not ours)."""


class ScoreError(Nb2ProdError):
    """Batch scoring cannot run: an unreadable or unknown table, a missing or clashing column,
    a release whose files changed; invalid rows are not errors (they go to the errors file)."""


class ReleaseBusyError(Nb2ProdError):
    """Another nb2prod run is writing the same release destination (its pid and command named)."""


class SecretLeakError(Nb2ProdError):
    """A credential is in an executed cell's output or in fitted state (named; never shown)."""


class SignatureError(Nb2ProdError):
    """A release cannot be signed (a key model-signing cannot use), or its signature is missing,
    made with another key, or does not match its files (the file named)."""
