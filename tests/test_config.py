"""Configuration discovery and validation (SPEC section 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nb2prod.errors import ConfigError
from nb2prod.notebook.config import Config, load_config


def test_defaults_when_there_is_no_config(tmp_path: Path) -> None:
    loaded = load_config(tmp_path / "My Model.ipynb")
    assert loaded.source == "defaults"
    assert loaded.config.version == "0.1.0"
    assert loaded.config.service.auth == "token"
    assert loaded.config.service_name(Path("My Model.ipynb")) == "my-model"


def test_nb2prod_toml_beside_the_notebook(tmp_path: Path) -> None:
    (tmp_path / "nb2prod.toml").write_text(
        'name = "iris"\nversion = "1.2.0"\n[gates]\naccuracy = ">= 0.9"\n'
        "[fallback]\ntimeout_ms = 100\ncircuit_breaker = { failures = 3, reset_s = 5 }\n"
    )
    loaded = load_config(tmp_path / "nb.ipynb")
    config = loaded.config
    assert (config.name, config.version) == ("iris", "1.2.0")
    assert config.fallback.circuit_breaker.failures == 3
    (gate,) = config.parsed_gates()
    assert (gate.metric, gate.op, gate.threshold) == ("accuracy", ">=", 0.9)


def test_tool_table_in_the_enclosing_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.nb2prod]\nversion = "2.0.0"\n'
    )
    (tmp_path / "notebooks").mkdir()
    loaded = load_config(tmp_path / "notebooks" / "nb.ipynb")
    assert loaded.config.version == "2.0.0"
    assert "[tool.nb2prod]" in loaded.source


def test_explicit_config_wins(tmp_path: Path) -> None:
    (tmp_path / "nb2prod.toml").write_text('version = "1.0.0"\n')
    other = tmp_path / "release.toml"
    other.write_text('version = "3.0.0"\n')
    assert load_config(tmp_path / "nb.ipynb", other).config.version == "3.0.0"


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nb2prod.toml"
    path.write_text('version = "1.0.0"\n[fallback]\ntimeout = 5\n')
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nb.ipynb")
    assert "unknown key 'fallback.timeout'" in err.value.message
    assert str(path) in err.value.message


def test_unknown_key_in_pyproject_names_the_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.nb2prod]\nnme = 'x'\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.nb2prod\]: unknown key 'nme'"):
        load_config(tmp_path / "nb.ipynb")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('version = "1.0"', "'version': must be a semantic version"),
        ('name = "Iris Model"', "'name': must be lowercase"),
        ('[gates]\naccuracy = "at least 0.9"', "gate for 'accuracy'"),
        ('[service]\nauth = "basic"', "'service.auth'"),
        ("[fallback]\nmin_confidence = 2", "'fallback.min_confidence'"),
        ("version = ", "not valid TOML"),
        ("[service]\nmax_batch_size = 0", "'service.max_batch_size'"),
        ("[monitoring]\nbins = 1", "'monitoring.bins'"),
        ("[monitoring]\nwindow = 10", "'monitoring.window'"),
        ("[monitoring]\nreferenc = 'x'", "unknown key 'monitoring.referenc'"),
    ],
)
def test_invalid_values_are_named(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "nb2prod.toml").write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nb.ipynb")
    assert fragment in err.value.message


def test_missing_explicit_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nb.ipynb", tmp_path / "nope.toml")


def test_every_operator() -> None:
    gates = Config(gates={"a": ">= 1", "b": "> 1", "c": "<= 1", "d": "< 1", "e": "== 1"})
    verdicts = {
        g.metric: (g.passes(1.0), g.passes(2.0), g.passes(0.0)) for g in gates.parsed_gates()
    }
    assert verdicts == {
        "a": (True, True, False),
        "b": (False, True, False),
        "c": (True, False, True),
        "d": (False, False, True),
        "e": (True, False, False),
    }


def test_service_and_monitoring_keys(tmp_path: Path) -> None:
    (tmp_path / "nb2prod.toml").write_text(
        "[service]\nbatching = false\nmax_batch_rows = 50\nlog_bodies = true\n"
        "[monitoring]\nreference = 'train_df'\nbins = 5\nwindow = 500\n"
    )
    config = load_config(tmp_path / "nb.ipynb").config
    assert (config.service.batching, config.service.max_batch_rows, config.service.log_bodies) == (
        False, 50, True,
    )  # fmt: skip
    assert (config.monitoring.reference, config.monitoring.bins, config.monitoring.window) == (
        "train_df", 5, 500,
    )  # fmt: skip


def test_execution_env_names_variables_and_never_nb2prods_own(tmp_path: Path) -> None:
    from nb2prod.notebook.config import load_config_file

    good = tmp_path / "good.toml"
    good.write_text('[execution]\nenv = ["DATABASE_URL"]\n')
    assert load_config_file(good).config.execution.env == ["DATABASE_URL"]
    for bad, says in (
        ('["NB2PROD_API_TOKEN"]', "never reach the kernel"),
        ('["A-B"]', "not an environment"),
    ):
        path = tmp_path / "bad.toml"
        path.write_text(f"[execution]\nenv = {bad}\n")
        with pytest.raises(ConfigError, match=says):
            load_config_file(path)


def test_lock_index_takes_a_table_or_a_list(tmp_path: Path) -> None:
    (tmp_path / "nb2prod.toml").write_text(
        '[lock]\nindex = { torch = "https://example.invalid/whl/cpu/", Torch_Vision = '
        '"https://example.invalid/whl/cpu" }\n'
    )
    lock = load_config(tmp_path / "nb.ipynb").config.lock
    assert lock.sources == {  # names as indexes compare them, one index per URL
        "torch": "https://example.invalid/whl/cpu",
        "torch-vision": "https://example.invalid/whl/cpu",
    }
    assert len(lock.index) == 1
    (tmp_path / "nb2prod.toml").write_text(
        '[[lock.index]]\npackages = ["torch"]\nurl = "https://example.invalid/whl/cpu"\n'
        '[[lock.index]]\npackages = ["jax"]\nurl = "file:///srv/wheels/simple"\n'
    )
    lock = load_config(tmp_path / "nb.ipynb").config.lock
    assert lock.sources == {
        "jax": "file:///srv/wheels/simple", "torch": "https://example.invalid/whl/cpu"
    }  # fmt: skip
    assert Config().lock.sources == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('index = { torch = "ftp://example.invalid" }', "'lock.index': torch = 'ftp://example"),
        ("index = { torch = 3 }", "'lock.index': torch = 3: write a table of package = URL"),
        ('index = "https://example.invalid"', "'lock.index': 'https://example.invalid': write a"),
        (
            'index = [{ packages = ["torch"], url = "https://a.invalid" }, '
            '{ packages = ["torch"], url = "https://b.invalid" }]',
            "'lock.index': torch is given two indexes (https://a.invalid and https://b.invalid)",
        ),
        ('index = [{ packages = [], url = "https://a.invalid" }]', "'lock.index.0.packages'"),
        (
            'index = [{ packages = ["no such"], url = "https://a.invalid" }]',
            "'lock.index.0.packages': 'no such' is not a package name",
        ),
        ('index = [{ packages = ["torch"], url = "cpu" }]', "'lock.index.0.url': 'cpu' is not"),
        ('indexes = { torch = "https://a.invalid" }', "unknown key 'lock.indexes'"),
    ],
)
def test_lock_index_errors_name_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "nb2prod.toml").write_text(f"[lock]\n{text}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nb.ipynb")
    assert err.value.message.startswith(str(tmp_path / "nb2prod.toml"))
    assert fragment in err.value.message
