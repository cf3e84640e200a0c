"""The Open Inference Protocol routes (nb2prod.runtime.v2) with a fake answer path.

The served protocol, with tritonclient as the client, is tested in tests/e2e/test_v2.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import struct
from typing import Any, Literal

import httpx
import pytest
from nb2prod.runtime import v2
from pydantic import BaseModel, Field


class Input(BaseModel):
    x: float = Field(ge=0)
    n: int
    flag: bool
    city: Literal["de", "fr"]
    day: dt.date
    note: str | None = None


class Output(BaseModel):
    label: str
    score: float
    parts: list[float]


MODEL = v2.Model("m", "1.2.0", v2.tensors(Input), v2.tensors(Output))


def _answer(degrade: bool = False, fail: bool = False) -> Any:
    async def answer(inputs: list[Any]) -> list[tuple[Any, str | None, str | None]]:
        if fail:
            return [(None, "error", "the model and the fallback failed")]
        return [
            ({"label": f"{i.city}-{i.day.isoformat()}", "score": i.x * 2, "parts": [i.n]},
             "timeout" if degrade and k == 1 else None, None)
            for k, i in enumerate(inputs)
        ]  # fmt: skip

    return answer


def call(
    method: str, path: str, body: Any = None, app: Any = None, **headers: str
) -> httpx.Response:
    app = app or v2.App(MODEL, Input, max_rows=4, answer=_answer())
    content = (
        body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    )

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, root_path="/v2")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, "/v2" + path, content=content, headers=headers)

    return asyncio.run(go())


ROWS = {
    "inputs": [
        {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, 2.0]},
        {"name": "n", "datatype": "INT64", "shape": [2], "data": [3, 4]},
        {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        {"name": "city", "datatype": "BYTES", "shape": [2], "data": ["de", "fr"]},
        {"name": "day", "datatype": "BYTES", "shape": [2], "data": ["2026-01-02", "2026-03-04"]},
        {"name": "note", "datatype": "BYTES", "shape": [2], "data": ["null", '"hi"']},
    ]
}


def test_fields_map_to_tensors_and_the_metadata_says_so() -> None:
    meta = call("GET", "/models/m").json()
    assert meta["name"] == "m" and meta["versions"] == ["1.2.0"] and meta["platform"] == "nb2prod"
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [
        ("x", "FP64"), ("n", "INT64"), ("flag", "BOOL"), ("city", "BYTES"), ("day", "BYTES"),
        ("note", "BYTES"),
    ]  # fmt: skip
    # a field that can be null cannot be a tensor of its type: JSON texts, said in parameters
    assert meta["inputs"][5]["parameters"] == {"content_type": "json"}
    assert "parameters" not in meta["inputs"][4]
    assert meta["outputs"][2] == {"name": "parts", "datatype": "BYTES", "shape": [-1],
                                  "parameters": {"content_type": "json"}}  # fmt: skip
    assert call("GET", "/models/m/versions/1.2.0").json() == meta


def test_health_and_readiness() -> None:
    assert call("GET", "/health/live").json() == {"live": True}
    assert call("GET", "/health/ready").json() == {"ready": True}
    assert call("GET", "/models/m/ready").json() == {"name": "m", "ready": True}
    assert call("GET", "/models/m/versions/1.2.0/ready").status_code == 200


def test_infer_answers_each_row_with_named_output_tensors() -> None:
    answered = call("POST", "/models/m/infer", {"id": "r-1", **ROWS})
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["model_name"] == "m" and body["model_version"] == "1.2.0" and body["id"] == "r-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"] == {"name": "label", "datatype": "BYTES", "shape": [2],
                                "data": ["de-2026-01-02", "fr-2026-03-04"]}  # fmt: skip
    assert outputs["score"]["data"] == [3.0, 4.0] and outputs["score"]["datatype"] == "FP64"
    assert [json.loads(p) for p in outputs["parts"]["data"]] == [[3.0], [4.0]]
    assert body["parameters"] == {"degraded": False, "reason": "", "degraded_count": 0}


def test_requested_outputs_only_and_degraded_rows_as_parameters() -> None:
    app = v2.App(MODEL, Input, max_rows=4, answer=_answer(degrade=True))
    body = call("POST", "/models/m/versions/1.2.0/infer",
                {**ROWS, "outputs": [{"name": "score"}]}, app=app).json()  # fmt: skip
    assert [o["name"] for o in body["outputs"]] == ["score"]
    assert body["parameters"] == {"degraded": True, "reason": "timeout", "degraded_count": 1}


def test_the_binary_tensor_extension_is_read() -> None:
    header = {"inputs": [dict(t) for t in ROWS["inputs"]]}
    blobs = {
        "x": struct.pack("<2f", 1.5, 2.0),  # a client may send FP32 for an FP64 field
        "n": struct.pack("<2i", 3, 4),
        "city": b"".join(struct.pack("<I", len(s)) + s for s in (b"de", b"fr")),
    }
    for tensor in header["inputs"]:
        if tensor["name"] in blobs:
            del tensor["data"]
            tensor["datatype"] = {"x": "FP32", "n": "INT32"}.get(tensor["name"], "BYTES")
            tensor["parameters"] = {"binary_data_size": len(blobs[tensor["name"]])}
    head = json.dumps(header).encode()
    body = head + blobs["x"] + blobs["n"] + blobs["city"]
    answered = call("POST", "/models/m/infer", body,
                    **{"Inference-Header-Content-Length": str(len(head))})  # fmt: skip
    assert answered.status_code == 200, answered.text
    outputs = {o["name"]: o["data"] for o in answered.json()["outputs"]}
    assert outputs["score"] == [3.0, 4.0]
    assert outputs["label"] == ["de-2026-01-02", "fr-2026-03-04"]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/models/other/infer", ROWS, 404, "unknown model 'other'"),
        ("/models/m/versions/9/infer", ROWS, 404, "unknown version '9'"),
        ("/models/m/infer", {"inputs": [{"name": "zz", "datatype": "FP64", "shape": [1],
                                          "data": [1]}]}, 400, "'zz' is not an input of m"),
        ("/models/m/infer", {"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1],
                                          "data": [True]}]}, 400, "'x' is FP64, not 'BOOL'"),
        ("/models/m/infer", {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3],
                                          "data": [1, 2]}]}, 400, "must list 3 values"),
        ("/models/m/infer", {"nothing": 1}, 400, "needs `inputs`"),
        ("/models/m/infer", {**ROWS, "outputs": [{"name": "nope"}]}, 400, "nope not an output"),
        # found by schemathesis: a name that is not a string hung the request
        ("/models/m/infer", {**ROWS, "outputs": [{"name": {}}]}, 400, "outputs[0] is not an output"),
        ("/models/m/infer", {"inputs": [{"name": "x", "datatype": ["FP64"], "shape": [1],
                                          "data": [1]}]}, 400, "'x' is FP64, not ['FP64']"),
        ("/models/m/infer", {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1],
                                          "data": [1], "parameters": [1]}]}, 400, "breaks the contract"),
    ],
)  # fmt: skip
def test_bad_requests_name_what_is_wrong(path: str, body: Any, status: int, says: str) -> None:
    answered = call("POST", path, body)
    assert answered.status_code == status, answered.text
    assert says in answered.json()["error"]


def test_a_row_that_breaks_the_contract_is_a_400_naming_row_and_field() -> None:
    rows = json.loads(json.dumps(ROWS))
    rows["inputs"][0]["data"] = [1.5, -1.0]  # x >= 0
    answered = call("POST", "/models/m/infer", rows)
    assert answered.status_code == 400
    body = answered.json()
    assert body["error"] == "row 1 breaks the contract of Input"
    assert body["detail"][0]["loc"] == [1, "x"]


def test_too_many_rows_and_no_answer() -> None:
    rows = {"inputs": [{"name": k, "datatype": t, "shape": [5], "data": [v] * 5}
                       for k, t, v in (("x", "FP64", 1.0), ("n", "INT64", 1), ("flag", "BOOL", True),
                                       ("city", "BYTES", "de"), ("day", "BYTES", "2026-01-01"))]}  # fmt: skip
    too_many = call("POST", "/models/m/infer", rows)
    assert too_many.status_code == 400 and "at most 4 rows" in too_many.json()["error"]
    failing = v2.App(MODEL, Input, max_rows=4, answer=_answer(fail=True))
    answered = call("POST", "/models/m/infer", ROWS, app=failing)
    assert answered.status_code == 503
    assert answered.json()["error"] == "the model and the fallback failed"
    assert call("GET", "/models/m/infer").status_code == 405
