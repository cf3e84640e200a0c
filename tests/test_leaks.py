"""Credentials in executed outputs and fitted state are found before a release is written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
import pytest
from nb2prod.errors import SecretLeakError
from nb2prod.notebook.annotations import annotate
from nb2prod.pipeline.execute import kernel_environment
from nb2prod.pipeline.leaks import find_leaks, raise_for_leaks, secret_values

from tests.conftest import code, notebook

PASSWORD = "s3cr3t-Db-passw0rd"
ENVIRON = {"DB_PASSWORD": PASSWORD, "NB2PROD_API_TOKEN": "tok-0123456789abcdef", "HOME": "/root"}


def executed(*outputs: str) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    cell = code("#| nb2prod: setup\nimport os\nprint(os.environ)")
    node = notebook(cell)
    ran = nbformat.from_dict(node)
    ran.cells[0]["metadata"]["nb2prod"] = {"index": 0}
    ran.cells[0]["outputs"] = [
        nbformat.v4.new_output("stream", name="stdout", text=t) for t in outputs
    ]
    return node, ran


def test_a_value_of_the_packagers_secret_variables_in_an_output_names_the_cell() -> None:
    node, ran = executed("environ({'HOME': '/root', 'DB_PASSWORD': '" + PASSWORD + "'})\n")
    leaks = find_leaks(annotate(node, Path("nb.ipynb")), ran, [], ENVIRON)
    assert [str(leak) for leak in leaks] == [
        "cell 0 (setup) `import os`, output line 1: Secret Keyword",  # detect-secrets' own
        "cell 0 (setup) `import os`, output line 1: the value of DB_PASSWORD from the packager's "
        "environment",
    ]
    with pytest.raises(SecretLeakError) as raised:
        raise_for_leaks(leaks)
    assert PASSWORD not in raised.value.message and "cell 0" in raised.value.message


def test_a_known_credential_format_in_an_output_is_found_without_the_environment() -> None:
    node, ran = executed("ok\n", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n")
    leaks = find_leaks(annotate(node, Path("nb.ipynb")), ran, [], {})
    # lines are counted over the cell's whole output: the second output's line is line 2
    assert [(leak.where, leak.kind) for leak in leaks] == [
        ("cell 0 (setup) `import os`, output line 2", "AWS Access Key")
    ]
    assert any("AWS" in leak.kind for leak in leaks)


def test_fitted_state_holding_a_secret_names_the_artifact(tmp_path: Path) -> None:
    skops = tmp_path / "db_password.skops"
    with zipfile.ZipFile(skops, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", '{"__class__": "str", "content": "' + PASSWORD + '"}')
    pickled = tmp_path / "lookup.joblib"
    pickled.write_bytes(b"\x80\x04\x95" + b"harmless" * 10)
    node, ran = executed("trained\n")
    leaks = find_leaks(
        annotate(node, Path("nb.ipynb")),
        ran,
        [("db_password", skops), ("lookup", pickled)],
        ENVIRON,
    )
    assert [leak.where for leak in leaks] == ["fitted state db_password (db_password.skops)"]


def test_clean_outputs_and_short_values_are_not_leaks() -> None:
    node, ran = executed("accuracy 0.97\n", "home is /root\n")
    assert find_leaks(annotate(node, Path("nb.ipynb")), ran, [], {**ENVIRON, "API_KEY": "1"}) == []
    assert secret_values({"API_KEY": "1", "PATH": "/usr/bin:/bin:/usr/local/bin"}) == {}


def test_the_kernel_environment_is_allow_listed() -> None:
    environ = {
        **ENVIRON, "PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "JUPYTER_PATH": "/j",
        "AWS_SECRET_ACCESS_KEY": "x" * 40, "DATABASE_URL": "postgres://u:p@db/x",
    }  # fmt: skip
    assert kernel_environment(environ) == {
        "HOME": "/root", "PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "JUPYTER_PATH": "/j",
    }  # fmt: skip
    listed = kernel_environment(environ, ["DATABASE_URL", "NB2PROD_API_TOKEN"])
    assert listed["DATABASE_URL"] == "postgres://u:p@db/x"
    assert "NB2PROD_API_TOKEN" not in listed  # never, even if a caller lists it
