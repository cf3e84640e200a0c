"""The Open Inference Protocol of a served release, called by a client nobody here wrote:
tritonclient[http] (Triton's own), with its defaults (inputs in the binary tensor extension)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from nb2prod.adapters import bento

from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e
TOKEN = "v2-token-not-secret"
FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def test_tritonclient_gets_the_notebooks_answers(iris_release: tuple[Path, Run]) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    release, _ = iris_release
    manifest = json.loads((release / "release.json").read_text())
    examples = json.loads((release / "examples.json").read_text())["examples"]
    name, version = manifest["name"], manifest["version"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with bento.serve(manifest["bento_tag"], env={"NB2PROD_API_TOKEN": TOKEN}) as running:
        client = triton.InferenceServerClient(url=running.url.removeprefix("http://"))
        # health routes are open, as Kubernetes probes call them; the model routes need the token
        assert client.is_server_live() and client.is_server_ready()
        with pytest.raises(InferenceServerException, match="missing or wrong bearer token"):
            client.get_model_metadata(name)
        assert client.is_model_ready(name, headers=auth)
        metadata = client.get_model_metadata(name, model_version=version, headers=auth)
        assert metadata["versions"] == [version]
        assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [
            (f, "FP64") for f in FIELDS
        ]
        assert [t["name"] for t in metadata["outputs"]] == ["species", "confidence"]

        inputs = []
        for field in FIELDS:
            tensor = triton.InferInput(field, [len(examples)], "FP64")
            tensor.set_data_from_numpy(np.array([e["input"][field] for e in examples], "float64"))
            inputs.append(tensor)
        result = client.infer(name, inputs, headers=auth, request_id="e2e-1")
        species = [s.decode() if isinstance(s, bytes) else s for s in result.as_numpy("species")]
        assert species == [e["output"]["species"] for e in examples]
        confidence = [json.loads(c) for c in result.as_numpy("confidence")]
        assert confidence == pytest.approx([e["output"]["confidence"] for e in examples])
        response = result.get_response()
        assert response["id"] == "e2e-1" and response["model_version"] == version
        assert response["parameters"]["degraded"] is False

        # a row the contract refuses is a 400 that names it, as on /v1
        bad = triton.InferInput("sepal_length", [1], "FP64")
        bad.set_data_from_numpy(np.array([-1.0]))
        rest = []
        for field in FIELDS[1:]:
            t = triton.InferInput(field, [1], "FP64")
            t.set_data_from_numpy(np.array([1.0]))
            rest.append(t)
        with pytest.raises(InferenceServerException, match="row 0 breaks the contract"):
            client.infer(name, [bad, *rest], headers=auth)
        client.close()
        # the requests were measured like /v1's, under bounded labels
        scraped = httpx.get(f"{running.url}/metrics", timeout=10).text
    assert 'route="/v2/infer"' in scraped
    assert (
        'nb2prod_requests_total{outcome="ok",reason="",route="/v2/infer",status="200"}'
        in (scraped.replace(" ", ""))
        or 'route="/v2/infer",status="200"' in scraped
    )
