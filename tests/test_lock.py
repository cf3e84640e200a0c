"""The lock with the real resolver (uv): exact pins, impossible pins, drift."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from nb2prod.adapters.pip_config import parse_config_list
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


# ---------------------------------------------------------------- [lock] index (issue 22)


def local_index(root: Path, name: str, version: str) -> str:
    """A simple (PEP 503) index on disk holding one pure-Python wheel: what a CPU-wheel index
    is to torch, for a package no other index has."""
    import base64
    import hashlib
    import zipfile

    dist = name.replace("-", "_")
    wheel = root / "files" / f"{dist}-{version}-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    info = f"{dist}-{version}.dist-info"
    members = {
        f"{dist}/__init__.py": "",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in members.items():
            archive.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
        archive.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / name / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(f'<a href="../../files/{wheel.name}#sha256={sha}">{wheel.name}</a>\n')
    return (root / "simple").as_uri()


def test_a_package_with_its_own_index_is_resolved_from_it_and_the_lock_says_so(
    tmp_path: Path,
) -> None:
    url = local_index(tmp_path, "nb2prod-cpu-demo", "1.0")
    lock = lock_environment(
        capture({"nb2prod-cpu-demo": "1.0"}, {"nb2prod-cpu-demo": "1.0"}),
        notebook="nb.ipynb",
        sources={"nb2prod-cpu-demo": url},
    )
    assert lock.pins == {"nb2prod-cpu-demo": "1.0"}
    assert f"# index: nb2prod-cpu-demo from {url}\n" in lock.text
    assert f"\n--extra-index-url {url}\n" in lock.text  # the install finds it there too
    # uv's notes name the direct requirements as they do without an index, never a scratch path
    assert "#   -r requirements.in" in lock.text and "pyproject" not in lock.text
    assert lock.sources == {"nb2prod-cpu-demo": url}
    assert lock.summary() == "1 packages pinned (1 direct), nb2prod-cpu-demo from [lock] index"


def test_accelerator_packages_in_the_lock_are_a_warning() -> None:
    from nb2prod.pipeline.lock import Lock

    # nvidia-ml-py (GPU metrics bindings, pure Python) comes with BentoML itself: not one
    pins = ["torch==2.5.1", "triton==3.1.0", "numpy==2.1.0", "nvidia-ml-py==12.560.30"]
    pins += [f"nvidia-{n}-cu12==12.4.5.8" for n in ("cublas", "cudnn", "nccl", "nvtx")]
    lock = Lock(direct=("torch==2.5.1",), text="\n".join(pins) + "\n")
    assert lock.accelerators == (
        "nvidia-cublas-cu12", "nvidia-cudnn-cu12", "nvidia-nccl-cu12", "nvidia-nvtx-cu12", "triton"
    )  # fmt: skip
    assert lock.summary() == (
        "8 packages pinned (1 direct); warning: 5 accelerator-specific packages "
        "(nvidia-cublas-cu12, nvidia-cudnn-cu12, nvidia-nccl-cu12, ..., triton) pinned; a CPU "
        "image does not need them; see [lock] index in docs/configuration.md"
    )
    cuda_build = Lock(direct=(), text="torch==2.5.1+cu121\nnumpy==2.1.0\n")
    assert cuda_build.accelerators == ("torch",)
    cpu = Lock(direct=(), text="torch==2.5.1+cpu\nnumpy==2.1.0\n")
    assert cpu.accelerators == () and "warning" not in cpu.summary()


def test_the_uv_input_carries_each_package_to_its_index() -> None:
    from nb2prod.adapters.uv import lock_command, lock_input

    assert lock_input(["a==1"], {}) == ("requirements.in", "a==1\n")
    name, text = lock_input(
        ["torch==2.5.1", "numpy==2.1.0"],
        {
            "torch": "https://example.invalid/whl/cpu",
            "torchvision": "https://example.invalid/whl/cpu",
        },
    )
    assert name == "pyproject.toml"
    import tomllib

    project = tomllib.loads(text)
    assert project["project"]["dependencies"] == ["torch==2.5.1", "numpy==2.1.0"]
    assert project["tool"]["uv"]["sources"] == {
        "torch": {"index": "nb2prod-index-1"}, "torchvision": {"index": "nb2prod-index-1"}
    }  # fmt: skip
    assert project["tool"]["uv"]["index"] == [
        {"name": "nb2prod-index-1", "url": "https://example.invalid/whl/cpu", "explicit": True}
    ]
    command = lock_command("uv", Path("/s/pyproject.toml"), Path("/s/c.txt"), "3.11.7")
    assert command[:4] == ["uv", "pip", "compile", "/s/pyproject.toml"]
    assert "--no-emit-index-url" in command and "--generate-hashes" in command


# ------------------------------------------------- the host pip's find-links and indexes (#22)


def test_a_local_build_from_a_find_links_directory_locks_and_the_lock_line_says_so(
    tmp_path: Path,
) -> None:
    # a package pip installed here from a wheel directory (torch 2.13.0+cpu from find-links):
    # a local version no index has
    local_index(tmp_path, "nb2prod-cpu-demo", "2.0+cpu")
    wheels = tmp_path / "files"
    kernel = capture({"nb2prod-cpu-demo": "2.0+cpu"}, {"nb2prod-cpu-demo": "2.0+cpu"})
    with pytest.raises(LockError, match="could not be locked"):
        lock_environment(kernel, notebook="nb.ipynb")  # without the directory: as before
    lock = lock_environment(kernel, notebook="nb.ipynb", find_links=[str(wheels)])
    assert lock.pins == {"nb2prod-cpu-demo": "2.0+cpu"}
    assert lock.local == {"nb2prod-cpu-demo==2.0+cpu": wheels.as_uri()}
    assert f"# local: nb2prod-cpu-demo==2.0+cpu from {wheels.as_uri()}\n" in lock.text
    assert "    # from " not in lock.text  # uv's origin notes are read, not kept
    assert lock.summary() == (
        f"1 packages pinned (1 direct); note: nb2prod-cpu-demo==2.0+cpu from {wheels.as_uri()}, "
        "a local source of this machine's pip: an image built elsewhere needs [lock] index for it"
    )


def test_a_file_index_from_pip_config_is_looked_in(tmp_path: Path) -> None:
    url = local_index(tmp_path, "nb2prod-cpu-demo", "3.0")
    lock = lock_environment(
        capture({"nb2prod-cpu-demo": "3.0"}, {"nb2prod-cpu-demo": "3.0"}),
        notebook="nb.ipynb",
        extra_index_urls=[url],
    )
    assert lock.pins == {"nb2prod-cpu-demo": "3.0"}
    assert set(lock.local.values()) == {url}


def test_pip_config_list_gives_find_links_and_extra_indexes(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "simple").mkdir()
    here, gone = (tmp_path / "simple").as_uri(), (tmp_path / "gone").as_uri()
    settings = parse_config_list(
        f":env:.find-links='{tmp_path / 'wheels'}'\n"
        f"global.find-links='/elsewhere'\n"
        f"global.extra-index-url='{here} {gone}'\n"
    )
    assert settings.find_links == (str(tmp_path / "wheels"),)  # the environment wins
    assert settings.extra_index_urls == (here, gone)
    # what exists of the find-links; extra indexes are not taken (a mirror would look local)
    assert settings.lock_sources == ((str(tmp_path / "wheels"),), ())
    assert settings.index_url is None
