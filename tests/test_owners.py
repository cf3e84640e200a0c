"""[owners]: who answers for the model, the service, the data and the pager reaches the model
card, service/metadata.json (and so /v1/metadata), and every alert's `team` label and runbook link;
the single `owner` keeps working as the model's owner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from nb2prod.errors import ConfigError
from nb2prod.notebook.config import Config, load_config
from nb2prod.ops.alerts import rule_groups
from nb2prod.pipeline.contract import Contract
from nb2prod.pipeline.evaluate import Evaluation
from nb2prod.pipeline.report import MODEL_CARD, render_reports
from nb2prod.runtime.schema import Owners, ReleaseInfo

from tests.factories import service_metadata
from tests.test_observability import IRIS

BASE = "https://git.example.com/ds/churn/-/blob/main/release"


def config(tmp_path: Path, text: str) -> Config:
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}")
    (tmp_path / "nb2prod.toml").write_text(text)
    return load_config(notebook).config


def test_owners_are_read_and_owner_stands_for_the_model(tmp_path: Path) -> None:
    found = config(
        tmp_path,
        'owner = "Data Science"\n[owners]\nservice = "ml-platform"\ndata = "data-eng"\n'
        f'on_call = "ml-oncall"\nrunbook_base_url = "{BASE}/"\n',
    )
    owners = found.resolved_owners()
    assert owners == Owners(
        model="Data Science", service="ml-platform", data="data-eng", on_call="ml-oncall",
        runbook_base_url=BASE,  # without its trailing slash
    )  # fmt: skip
    assert owners.team == "ml-oncall"
    assert owners.runbook("nb2prodnotready") == f"{BASE}/RUNBOOK.md#nb2prodnotready"
    # [owners] model wins over owner; the pager falls back to the service's, then the model's
    both = config(tmp_path, 'owner = "A"\n[owners]\nmodel = "B"\nservice = "S"\n')
    assert both.resolved_owners().model == "B" and both.resolved_owners().team == "S"
    only = config(tmp_path, 'owner = "Data Science"\n').resolved_owners()
    assert only.team == "Data Science" and only.roles() == [("model", "Data Science")]
    assert Config().resolved_owners() == Owners() and Owners().team is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[owners]\npager = "x"\n', "unknown key 'owners.pager'"),
        ('[owners]\nrunbook_base_url = "git.example.com/runbooks"\n',
         "'owners.runbook_base_url': 'git.example.com/runbooks' is not an absolute http"),
        ('[owners]\non_call = ""\n', "'owners.on_call'"),
    ],
)  # fmt: skip
def test_bad_owners_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        config(tmp_path, text)
    assert "nb2prod.toml" in str(caught.value)


def test_every_alert_carries_the_team_and_an_absolute_runbook_link() -> None:
    owned = replace(IRIS, owners=Owners(service="ml-platform", runbook_base_url=BASE))
    rules = rule_groups(owned)["groups"][0]["rules"]
    assert len(rules) == 14 and {r["labels"]["team"] for r in rules} == {"ml-platform"}
    for rule in rules:
        assert rule["annotations"]["runbook_url"] == f"{BASE}/RUNBOOK.md#{rule['alert'].lower()}"
    # nobody named: no team label, and the runbook link stays relative to the release
    unowned = rule_groups(replace(IRIS, owners=Owners()))["groups"][0]["rules"]
    assert all("team" not in r["labels"] for r in unowned)
    assert all(r["annotations"]["runbook_url"].startswith("RUNBOOK.md#") for r in unowned)


def test_the_metadata_carries_the_owners_and_reads_a_release_made_before_them() -> None:
    metadata = service_metadata(owner="Data Science")
    info = json.loads(metadata.model_dump_json(by_alias=True))["release"]
    assert info["owners"] == {
        "model": None, "service": None, "data": None, "on_call": None, "runbook_base_url": None,
    }  # fmt: skip
    del info["owners"]  # service/metadata.json of an older release
    assert ReleaseInfo.model_validate(info).owners == Owners()
    given = ReleaseInfo.model_validate({**info, "owners": {"on_call": "ml-oncall"}})
    assert given.owners.team == "ml-oncall"


def card(cfg: Config) -> str:
    contract = Contract(
        "1.0.0",
        {"type": "object", "properties": {"x": {"type": "number"}}},
        {"type": "object", "properties": {"y": {"type": "number"}}},
        (),
    )
    files = render_reports(
        Evaluation(metrics={"mae": 0.5}, results=(), gates_enforced=True),
        name="demo", version="1.0.0", notebook="demo.ipynb", node=nbformat.v4.new_notebook(),
        config=cfg, contract=contract, model_class="sklearn.linear_model.Ridge",
        model_format="skops", training_data=None,
    )  # fmt: skip
    return files[MODEL_CARD].decode()


def test_the_model_card_lists_each_owner_by_role(tmp_path: Path) -> None:
    text = card(
        config(tmp_path, 'owner = "Data Science"\n[owners]\non_call = "ml-oncall"\ndata = "dw"\n')
    )
    section = text.split("## Owners and contact")[1].split("\n## ")[0]
    assert section.strip().splitlines() == [
        "| role | owner |",
        "| --- | --- |",
        "| model | Data Science |",
        "| data | dw |",
        "| on call | ml-oncall |",
    ]
    assert "Not stated: set `[owners]`" in card(Config())
