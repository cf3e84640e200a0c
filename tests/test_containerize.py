"""containerize and base-image without a container engine: backend choice, the Containerfile,
labels, the host's pip settings, apt sources, and errors that name what is wrong."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path
from typing import Any

import jinja2
import pytest
from click.testing import CliRunner
from nb2prod.adapters import container, debian
from nb2prod.adapters.pip_config import parse_config_list
from nb2prod.cli import main
from nb2prod.errors import ContainerError, MissingToolError, TargetError
from nb2prod.image import containerize as containerize_module
from nb2prod.image.containerize import (
    ContainerfileContext,
    ImageOptions,
    containerize,
    dockerfile_quote,
    image_labels,
    render_containerfile,
)
from nb2prod.release.writer import canonical_json
from nb2prod.runtime.schema import dump

from tests.conftest import tree_snapshot
from tests.factories import release_manifest, service_metadata

METADATA = service_metadata(
    owner="Data Science <ds@example.com>",
    git_commit="0123456789abcdef0123456789abcdef01234567",
    batching_max_size=32,
).release


# --- backend choice ---------------------------------------------------------------------------


def fake_tools(tmp_path: Path, **scripts: str) -> Any:
    """A `which` that finds only the given tools, each a shell script with the given body."""
    found = {}
    for name, body in scripts.items():
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        found[name] = str(path)
    return found.get


def test_docker_without_a_daemon_is_passed_over_for_podman_and_the_reason_is_given(
    tmp_path: Path,
) -> None:
    which = fake_tools(tmp_path, docker="echo 'Cannot connect' >&2; exit 1", podman="exit 0")
    engine = container.choose(which=which)
    assert engine.name == "podman"
    assert engine.why == "docker client found but no daemon answers"


def test_docker_is_chosen_when_its_daemon_answers(tmp_path: Path) -> None:
    which = fake_tools(tmp_path, docker="echo 27.0.1", podman="exit 0")
    engine = container.choose(which=which)
    assert (engine.name, engine.why) == ("docker", "its daemon answers")
    assert engine.env["DOCKER_BUILDKIT"] == "1"  # build secrets need BuildKit


def test_buildah_builds_but_cannot_verify(tmp_path: Path) -> None:
    which = fake_tools(tmp_path, buildah="exit 0")
    assert container.choose(which=which).name == "buildah"
    with pytest.raises(MissingToolError, match="buildah is installed but cannot run containers"):
        container.choose(need_run=True, which=which)
    with pytest.raises(ContainerError, match="--backend buildah cannot run containers"):
        container.choose("buildah", need_run=True, which=which)


def test_no_engine_is_an_error_naming_the_debian_packages(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError) as caught:
        container.choose(which=fake_tools(tmp_path))
    assert "docker, podman or buildah" in caught.value.message
    assert caught.value.hint and "apt-get install" in caught.value.hint
    assert "podman" in caught.value.hint and "mmdebstrap" in caught.value.hint


def test_a_requested_backend_must_exist_and_be_known(tmp_path: Path) -> None:
    which = fake_tools(tmp_path, docker="exit 1", podman="exit 0")
    with pytest.raises(ContainerError, match="--backend rkt: unknown container backend"):
        container.choose("rkt", which=which)
    with pytest.raises(MissingToolError, match="--backend buildah: `buildah` is not installed"):
        container.choose("buildah", which=which)
    with pytest.raises(ContainerError, match="no Docker daemon answers"):
        container.choose("docker", which=which)
    assert container.choose("podman", which=which).why == "asked for with --backend"


def test_nb2prods_containers_conf_is_used_only_when_the_user_has_none(tmp_path: Path) -> None:
    assert not container.containers_conf_needed({"CONTAINERS_CONF": "/etc/mine.conf"})
    own = tmp_path / "containers" / "containers.conf"
    own.parent.mkdir()
    own.write_text("[engine]\n")
    assert not container.containers_conf_needed({"XDG_CONFIG_HOME": str(tmp_path)})
    needed = container.containers_conf_needed({"XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert needed == (not Path("/etc/containers/containers.conf").is_file())
    text = container.containers_conf(runc="/usr/sbin/runc").read_text()
    assert 'runtime = "runc"' in text and 'cgroup_manager = "cgroupfs"' in text


def test_without_runc_the_engines_own_runtime_is_used_and_its_failure_names_the_package() -> None:
    text = container.containers_conf(runc="").read_text()
    assert "runtime =" not in text.replace("# ", "") and 'cgroup_manager = "cgroupfs"' in text
    crun = "Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied"
    assert "apt-get install runc" in (container.runtime_hint(crun) or "")
    missing = 'Error: default OCI runtime "runc" not found: invalid argument'
    assert "apt-get install runc" in (container.runtime_hint(missing) or "")
    assert container.runtime_hint("Error: image not known") is None


# --- the Containerfile and its labels ---------------------------------------------------------


def rendered(**overrides: Any) -> str:
    labels = image_labels(
        METADATA, bento_tag="iris-classifier:abc", base_image="localhost/b:1", created="2026-01-01"
    )
    context = ContainerfileContext(
        nb2prod_version="0.1.0",
        bento_tag="iris-classifier:abc",
        base_image="localhost/b:1",
        python="3.11",
        uid=10001,
        port=3000,
        labels=[(k, dockerfile_quote(v)) for k, v in sorted(labels.items())],
    )
    for key, value in overrides.items():
        context = ContainerfileContext(**{**context.__dict__, key: value})
    return render_containerfile(context).decode()


def test_containerfile_installs_the_hashed_lock_with_secrets_and_runs_as_non_root() -> None:
    text = rendered()
    assert text.startswith(
        "# Containerfile: generated by nb2prod 0.1.0 for bento iris-classifier:abc"
    )
    assert "\nFROM localhost/b:1\n" in text
    assert "--mount=type=secret,id=ca" in text and "--mount=type=secret,id=index" in text
    assert "--require-hashes" in text and "--only-binary=:all:" in text and "--no-deps" in text
    assert "USER 10001:10001" in text
    assert "HEALTHCHECK" in text and "/readyz" in text
    assert text.rstrip().endswith(
        'CMD ["bentoml", "serve", "/opt/bento", "--host", "0.0.0.0", "--port", "3000"]'
    )
    # no compiler toolchain, no resolution at build time, no CA bundle copied in
    instructions = "\n".join(li for li in text.splitlines() if not li.startswith("#"))
    for absent in ("build-essential", "apt-get", "gcc", "COPY ca", "ca-certificates.crt"):
        assert absent not in instructions


def test_containerfile_compiles_the_bento_and_site_packages_before_dropping_root() -> None:
    text = rendered()
    compile_line = "RUN python3 -m compileall -q -j 0 /opt/bento /opt/venv/lib"
    assert compile_line in text
    # after the bento is copied in (its code), before USER (root can write __pycache__ there)
    assert text.index("COPY bento /opt/bento") < text.index(compile_line) < text.index("USER ")
    assert "PYTHONDONTWRITEBYTECODE" not in text


def test_containerfile_checks_the_base_images_python() -> None:
    assert "the lock is for 3.12" in rendered(python="3.12")


def test_containerfile_template_is_strict() -> None:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(containerize_module.TEMPLATES),
        undefined=jinja2.StrictUndefined,
    )
    with pytest.raises(jinja2.UndefinedError):
        environment.get_template("Containerfile.j2").render(base_image="x")


def test_labels_oci_and_nb2prod() -> None:
    labels = image_labels(
        METADATA, bento_tag="iris-classifier:abc", base_image="localhost/b:1", created="2026-01-01"
    )
    assert labels["org.opencontainers.image.title"] == "iris-classifier"
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.revision"] == METADATA.git_commit
    assert labels["org.opencontainers.image.created"] == "2026-01-01"
    assert labels["nb2prod.name"] == "iris-classifier"
    assert labels["nb2prod.contract-sha256"] == "c" * 64
    assert labels["nb2prod.bento-tag"] == "iris-classifier:abc"
    without_git = image_labels(
        METADATA.model_copy(update={"git_commit": None}),
        bento_tag="t:v",
        base_image="b",
        created="c",
    )
    assert "org.opencontainers.image.revision" not in without_git


def test_label_values_are_quoted_and_never_expanded() -> None:
    assert dockerfile_quote('a "b" $HOME') == '"a \\"b\\" \\$HOME"'
    assert 'org.opencontainers.image.authors="Data Science <ds@example.com>"' in rendered()


# --- the host's pip, apt sources --------------------------------------------------------------


def test_host_pip_cert_and_index_environment_first_file_indexes_left_out() -> None:
    settings = parse_config_list(
        "global.cert='/etc/ssl/a.pem'\n:env:.cert='/etc/ssl/b.pem'\n"
        "global.index-url='https://mirror.invalid/simple'\n"
        "global.extra-index-url='file:///opt/wheels'\n"
    )
    assert settings.cert == Path("/etc/ssl/b.pem") and settings.cert_source == "PIP_CERT"
    assert settings.index_url == "https://mirror.invalid/simple"
    local = parse_config_list("global.index-url='file:///srv/simple'\n")
    assert local.index_url is None and local.cert is None


def test_apt_sources_one_line_and_deb822(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [signed-by=/k.gpg arch=amd64] http://mirror.invalid/debian bookworm main contrib\n"
        "deb-src http://mirror.invalid/debian bookworm main\n"
    )
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.invalid/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.invalid\nSuites: bookworm\nComponents: main\n"
    )
    (parts / "other.list.disabled").write_text("deb http://ignored.invalid bookworm main\n")
    (parts / "node.list").write_text("deb https://node.invalid/node nodistro main\n")
    sources = debian.apt_sources(tmp_path)
    mirrors = debian.mirrors_for("bookworm", sources)
    assert [m.line() for m in mirrors] == [
        "deb http://mirror.invalid/debian bookworm main contrib",
        "deb http://mirror.invalid/debian bookworm-updates main",
        "deb http://security.invalid/debian-security bookworm-security main",
    ]
    assert len(sources) == 4  # the node source is read but is not a bookworm mirror


def test_mmdebstrap_missing_is_an_error_saying_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError) as caught:
        debian.bootstrap("bookworm", [], ["python3"], tmp_path / "x.tar", which=lambda _: None)
    assert caught.value.hint and "apt-get install" in caught.value.hint
    assert "--base-image" in caught.value.hint


# --- containerize: errors, and the release is never touched -----------------------------------


def fake_release(tmp_path: Path) -> Path:
    release = tmp_path / "dist" / "iris-classifier-1.0.0"
    (release / "service").mkdir(parents=True)
    metadata = service_metadata(
        owner=METADATA.owner, git_commit=METADATA.git_commit, batching_max_size=32
    )
    (release / "service" / "metadata.json").write_text(metadata.model_dump_json())
    (release / "requirements.lock").write_text("numpy==2.0.0 \\\n    --hash=sha256:00\n")
    manifest = release_manifest(files={}, bento_tag="iris-classifier:abc")
    (release / "release.json").write_bytes(canonical_json(dump(manifest)))
    return release


def test_missing_ca_bundle_is_named(tmp_path: Path) -> None:
    release = fake_release(tmp_path)
    with pytest.raises(ContainerError, match=r"--ca-bundle .*nope\.pem: no such file"):
        containerize(str(release), ImageOptions(ca_bundle=tmp_path / "nope.pem"))


def test_unknown_target_is_named(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no such release directory"):
        containerize(str(tmp_path / "missing"))


def test_context_dir_must_be_new_or_empty(tmp_path: Path) -> None:
    release = fake_release(tmp_path)
    used = tmp_path / "ctx"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(ContainerError, match="--context .*ctx: exists and is not an empty"):
        containerize(str(release), ImageOptions(context_dir=used, ca_bundle=None))
    assert (used / "keep.txt").read_text() == "mine"


def test_a_failed_build_leaves_the_release_untouched_and_keeps_the_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = fake_release(tmp_path)
    bento_dir = tmp_path / "store" / "iris-classifier" / "abc"
    (bento_dir / "src").mkdir(parents=True)
    (bento_dir / "bento.yaml").write_text("name: iris-classifier\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    seen: dict[str, Any] = {}

    def failing_build(engine: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise ContainerError("podman build of localhost/iris-classifier:1.0.0 failed")

    engine = container.Engine("podman", "/usr/bin/podman", "test")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the kept context stays in tmp_path
    monkeypatch.setattr(container, "choose", lambda *a, **k: engine)
    monkeypatch.setattr(container, "image_exists", lambda *a: True)
    monkeypatch.setattr(container, "build", failing_build)
    monkeypatch.setattr(containerize_module.bento, "path_of", lambda tag: bento_dir)
    before = tree_snapshot(release)
    with pytest.raises(ContainerError, match="build of localhost/iris-classifier:1.0.0 failed"):
        containerize(
            str(release),
            ImageOptions(
                base_image="localhost/b:1", ca_bundle=ca, index_url="https://u:p@x.invalid/"
            ),
        )
    assert tree_snapshot(release) == before
    context = seen["context"]
    assert context.is_relative_to(tmp_path)
    assert (context / "Containerfile").is_file() and (context / "bento" / "bento.yaml").is_file()
    assert (context / "requirements.lock").read_bytes() == (
        release / "requirements.lock"
    ).read_bytes()
    assert seen["secrets"]["ca"] == ca.resolve()
    # the index URL (it may carry credentials) went in as a secret, and is gone after the failure
    assert not seen["secrets"]["index"].exists()
    assert "u:p@" not in (context / "Containerfile").read_text()


# --- the command line -------------------------------------------------------------------------


def test_containerize_command_passes_its_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def fake(target: str, options: ImageOptions, progress: Any) -> Any:
        seen.update(target=target, options=options)
        raise ContainerError("stop here", hint="a hint")

    monkeypatch.setattr(containerize_module, "containerize", fake)
    result = CliRunner().invoke(
        main,
        ["containerize", "dist/x", "--backend", "podman", "--base-image", "localhost/b:1",
         "--ca-bundle", "ca.pem", "--index-url", "https://x.invalid/simple", "--tag", "r/x:1"],
    )  # fmt: skip
    assert result.exit_code == 1 and "error: stop here" in result.output
    assert seen["target"] == "dist/x"
    assert seen["options"] == ImageOptions(
        backend="podman",
        base_image="localhost/b:1",
        ca_bundle=Path("ca.pem"),
        index_url="https://x.invalid/simple",
        reference="r/x:1",
    )


def test_unknown_backend_is_refused_by_the_command_line() -> None:
    result = CliRunner().invoke(main, ["containerize", "dist/x", "--backend", "rkt"])
    assert result.exit_code == 2 and "rkt" in result.output


def test_package_containerize_passes_image_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from nb2prod.pipeline import run as package_module

    seen: dict[str, Any] = {}

    def fake_package(request: Any, progress: Any) -> Any:
        seen["request"] = request
        raise ContainerError("stop here")

    monkeypatch.setattr(package_module, "package", fake_package)
    CliRunner().invoke(main, ["package", "nb.ipynb", "--containerize", "--backend", "buildah"])
    assert seen["request"].image == ImageOptions(backend="buildah")
    CliRunner().invoke(main, ["package", "nb.ipynb"])
    assert seen["request"].image is None


def test_verify_image_refuses_an_image_of_another_bento(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2prod.pipeline.verify import verify_image
    from nb2prod.release.reader import Release

    info = container.ImageInfo(
        "img", "id", 1, {"nb2prod.bento-tag": "iris-classifier:old"}, "1", ()
    )
    monkeypatch.setattr(container, "inspect_image", lambda engine, ref: info)
    engine = container.Engine("podman", "/usr/bin/podman", "test")
    target = Release(tmp_path, "iris-classifier:new", "bento", None)
    with pytest.raises(
        TargetError, match="built from bento iris-classifier:old, not iris-classifier:new"
    ):
        verify_image(target, "img", engine)


def test_loadtest_refuses_an_image_of_another_bento_before_starting_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nb2prod.ops import loadtest

    info = container.ImageInfo(
        "img", "id", 1, {"nb2prod.bento-tag": "iris-classifier:old"}, "1", ()
    )
    engine = container.Engine("podman", "/usr/bin/podman", "test")
    started: list[str] = []
    monkeypatch.setattr(container, "choose", lambda backend, need_run: engine)
    monkeypatch.setattr(container, "inspect_image", lambda engine, ref: info)
    monkeypatch.setattr(container, "run_service", lambda *a, **k: started.append("run"))
    with (
        pytest.raises(TargetError, match="built from bento iris-classifier:old, not iris-"),
        loadtest._served("iris-classifier:new", "img", None, "token"),
    ):
        pass
    assert started == []


def test_package_says_the_release_stands_when_only_its_image_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2prod.pipeline import run as package_module

    release = tmp_path / "dist" / "svc-1.0.0"
    monkeypatch.setattr(
        package_module,
        "_release",
        lambda request, progress: package_module.PackageResult(
            release, "svc:a", "svc", "1.0.0", 1, 1.0
        ),
    )

    def failing(target: str, options: ImageOptions, progress: Any) -> Any:
        raise ContainerError("podman build of localhost/svc:1.0.0 failed", hint="Full log: x.")

    monkeypatch.setattr(package_module, "containerize", failing)
    request = package_module.PackageRequest(notebook=tmp_path / "nb.ipynb", image=ImageOptions())
    with pytest.raises(ContainerError) as caught:
        package_module.package(request)
    assert f"the release {release} is complete and verified" in caught.value.message
    assert caught.value.hint == f"Full log: x. Retry with: nb2prod containerize {release}"


def test_a_release_whose_bento_is_not_in_the_store_is_named_before_any_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = fake_release(tmp_path)

    def no_engine(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no engine may be chosen for a release without its bento")

    monkeypatch.setattr(container, "choose", no_engine)
    with pytest.raises(TargetError, match=r"bento iris-classifier:abc is not in the BentoML store"):
        containerize(str(release), ImageOptions(ca_bundle=None, index_url="https://x.invalid/"))


def test_image_options_need_containerize_and_backend_needs_image() -> None:
    result = CliRunner().invoke(main, ["package", "nb.ipynb", "--ca-bundle", "ca.pem"])
    assert (
        result.exit_code == 2
        and "--ca-bundle is an image option: add --containerize" in result.output
    )
    result = CliRunner().invoke(main, ["package", "nb.ipynb", "--tag", "x:1"])
    assert result.exit_code == 2 and "--tag is an image option" in result.output
    result = CliRunner().invoke(main, ["verify", "dist/x", "--backend", "podman"])
    assert result.exit_code == 2 and "add --image" in result.output
