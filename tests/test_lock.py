"""The lock with the real resolver (uv): exact pins, impossible pins, drift."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from nb2prod.errors import LockError
from nb2prod.pipeline.capture import Capture
from nb2prod.pipeline.lock import lock_environment
from nb2prod.probe.protocol import ProbeResult, StoredObject

PYDANTIC = metadata.version("pydantic")
PYDANTIC_CORE = metadata.version("pydantic-core")


def capture(
    requirements: dict[str, str], installed: dict[str, str], unresolved: tuple[str, ...] = ()
) -> Capture:
    result = ProbeResult(
        model=StoredObject(file="m", format="joblib", why=""), model_class="x", examples=(),
        metrics=None, input_schema={}, output_schema={}, output_fields=(),
        requirements=requirements, unresolved_modules=unresolved, installed=installed,
        python_version="3.11.7",
    )  # fmt: skip
    return Capture(result, Path("probe"))


def test_the_lock_pins_the_kernels_versions_with_hashes() -> None:
    lock = lock_environment(
        capture({"pydantic": PYDANTIC}, {"pydantic": PYDANTIC, "pydantic-core": PYDANTIC_CORE}),
        notebook="nb.ipynb",
    )
    assert lock.pins["pydantic"] == PYDANTIC and lock.pins["pydantic-core"] == PYDANTIC_CORE
    assert "--hash=sha256:" in lock.text and lock.drift == ()


def test_an_impossible_pin_fails_with_the_resolvers_reason() -> None:
    with pytest.raises(LockError) as err:
        lock_environment(capture({"pydantic": "0.0.0"}, {}), notebook="nb.ipynb")
    assert "could not be locked" in err.value.message
    assert "pydantic==0.0.0" in err.value.message  # uv's own explanation is passed on


def test_drift_is_an_error_naming_both_versions_unless_allowed() -> None:
    kernel = {"pydantic": PYDANTIC, "pydantic-core": "0.0.1"}  # a version no index serves
    with pytest.raises(LockError) as err:
        lock_environment(capture({"pydantic": PYDANTIC}, kernel), notebook="nb.ipynb")
    assert f"pydantic-core 0.0.1 (notebook) -> {PYDANTIC_CORE} (lock)" in err.value.message
    assert "--allow-drift" in (err.value.hint or "")
    lock = lock_environment(capture({"pydantic": PYDANTIC}, kernel), notebook="n", allow_drift=True)
    assert [(d.name, d.kernel, d.locked) for d in lock.drift] == [
        ("pydantic-core", "0.0.1", PYDANTIC_CORE)
    ]


def test_a_module_no_distribution_provides_is_an_error() -> None:
    unresolved = capture({}, {}, unresolved=("helpers",))
    with pytest.raises(LockError, match="imports helpers, which no installed distribution"):
        lock_environment(unresolved, notebook="nb.ipynb")
