"""The Open Inference Protocol (KServe's V2, Triton's HTTP API) over the release's contract.

Each Input field is a named input tensor of shape ``[n]`` for n rows, each Output field a named
output tensor. A field whose values are all one JSON type becomes that tensor type (``number`` ->
FP64, ``integer`` -> INT64, ``boolean`` -> BOOL, ``string`` -> BYTES); a field that can be null or
holds lists or objects cannot be a tensor of numbers, so it is a BYTES tensor whose elements are
JSON texts (the tensor's metadata says ``"content_type": "json"``). Requests in JSON and in the
binary tensor extension (what ``tritonclient`` sends by default) are read; answers are JSON.
Answers go through the service's one answer path (guard, fallback, metrics): ``degraded`` and
``reason`` are response parameters.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from .asgi import dumps, read_body, send_json

PLATFORM = "nb2prod"
JSON_CONTENT = "json"  # a BYTES tensor whose elements are JSON texts
HEADER_LENGTH = b"inference-header-content-length"
#: The tensor type of a field whose schema is one JSON type.
DATATYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}
#: What a client may send for a field of each tensor type (numpy arrays of other widths).
ACCEPTED = {
    "FP64": {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16",
             "UINT32", "UINT64"},
    "INT64": {"INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16", "UINT32", "UINT64"},
    "BOOL": {"BOOL"},
    "BYTES": {"BYTES"},
}  # fmt: skip
_STRUCT = {"FP64": "d", "FP32": "f", "INT64": "q", "INT32": "i", "INT16": "h", "INT8": "b",
           "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "BOOL": "?"}  # fmt: skip
_PATH = re.compile(
    r"^/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?$"
)


class ProtocolError(Exception):
    """A request the protocol refuses: its HTTP status and message (and pydantic's detail)."""

    def __init__(self, status: int, message: str, detail: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **({"detail": self.detail} if self.detail else {})}


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    json: bool = False  # BYTES elements are JSON texts of the values

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "datatype": self.datatype, "shape": [-1]}
        if self.json:
            meta["parameters"] = {"content_type": JSON_CONTENT}
        return meta


def tensors(model: type[BaseModel]) -> tuple[Tensor, ...]:
    """One tensor per field of ``model``, in declared order."""
    properties = model.model_json_schema().get("properties", {})
    return tuple(_tensor(name, properties.get(name, {})) for name in model.model_fields)


def _tensor(name: str, schema: Mapping[str, Any]) -> Tensor:
    kind = schema.get("type")
    if kind is None and "enum" in schema:
        kinds = {type(v) for v in schema["enum"]}
        kind = {str: "string", bool: "boolean", int: "integer", float: "number"}.get(
            kinds.pop() if len(kinds) == 1 else type(None)
        )
    if kind is None and "const" in schema:
        kind = {str: "string", bool: "boolean", int: "integer", float: "number"}.get(
            type(schema["const"])
        )
    if isinstance(kind, str) and kind in DATATYPES:
        return Tensor(name, DATATYPES[kind])
    return Tensor(name, "BYTES", json=True)


@dataclass(frozen=True)
class Model:
    """What the V2 routes serve: one model, the release, with its tensors."""

    name: str
    version: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": [t.metadata() for t in self.inputs],
            "outputs": [t.metadata() for t in self.outputs],
        }

    def route(self, path: str) -> tuple[str, str]:
        """The action of a /v2 path below /v2 (``""``, ``"/ready"`` or ``"/infer"``) and its
        version; a 404 for another model or version."""
        found = _PATH.match(path)
        if found is None:
            raise ProtocolError(404, f"{path}: not a route of the Open Inference Protocol")
        if found["name"] != self.name:
            raise ProtocolError(404, f"unknown model {found['name']!r}; this server serves "
                                     f"{self.name!r}")  # fmt: skip
        if found["version"] is not None and found["version"] != self.version:
            raise ProtocolError(404, f"unknown version {found['version']!r} of {self.name!r}; "
                                     f"this server serves {self.version!r}")  # fmt: skip
        return found["action"] or "", found["version"] or self.version

    def rows(
        self, body: bytes, header_length: int | None
    ) -> tuple[list[dict[str, Any]], str | None, list[str] | None]:
        """The request's rows (field -> value), its id and the outputs it asks for (the JSON is
        parsed once); a 400 naming the tensor otherwise."""
        head, binary = (body, b"") if header_length is None else _split(body, header_length)
        try:
            request = json.loads(head)
        except ValueError as exc:
            raise ProtocolError(400, f"the request is not JSON: {exc}") from None
        if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
            raise ProtocolError(400, "the request needs `inputs`: a list of tensors")
        given: dict[str, list[Any]] = {}
        offset = 0
        for i, item in enumerate(request["inputs"]):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ProtocolError(400, f"inputs[{i}] is not a tensor with a `name`")
            tensor = next((t for t in self.inputs if t.name == item["name"]), None)
            if tensor is None:
                raise ProtocolError(400, f"inputs[{i}]: {item['name']!r} is not an input of "
                                         f"{self.name} ({', '.join(t.name for t in self.inputs)})")  # fmt: skip
            if item["name"] in given:
                raise ProtocolError(400, f"inputs[{i}]: {item['name']!r} is given twice")
            values, offset = _values(tensor, item, binary, offset)
            given[tensor.name] = values
        if offset != len(binary):
            raise ProtocolError(400, f"{len(binary) - offset} bytes of binary data no input names")
        lengths = {len(v) for v in given.values()}
        if len(lengths) > 1:
            raise ProtocolError(400, "the input tensors have different lengths: "
                                + ", ".join(f"{k}={len(v)}" for k, v in given.items()))  # fmt: skip
        n = lengths.pop() if lengths else 0
        rows = [{name: values[i] for name, values in given.items()} for i in range(n)]
        request_id = request.get("id")
        return rows, request_id if isinstance(request_id, str) else None, self.requested(request)

    def response(
        self,
        outputs: Sequence[Mapping[str, Any]],
        *,
        request_id: str | None,
        requested: Sequence[str] | None,
        degraded: Sequence[str | None],
    ) -> dict[str, Any]:
        """The answer to an infer request: one tensor per (requested) Output field."""
        chosen = [t for t in self.outputs if requested is None or t.name in requested]
        reasons = [r for r in degraded if r is not None]
        body: dict[str, Any] = {
            "model_name": self.name,
            "model_version": self.version,
            "outputs": [
                {"name": t.name, "datatype": t.datatype, "shape": [len(outputs)],
                 "data": [_encode(t, row.get(t.name)) for row in outputs],
                 **({"parameters": {"content_type": JSON_CONTENT}} if t.json else {})}
                for t in chosen
            ],
            "parameters": {"degraded": bool(reasons), "reason": reasons[0] if reasons else "",
                           "degraded_count": len(reasons)},
        }  # fmt: skip
        if request_id is not None:
            body["id"] = request_id
        return body

    def requested(self, request: Mapping[str, Any]) -> list[str] | None:
        """The Output fields the (parsed) request names in ``outputs`` (None: all)."""
        listed = request.get("outputs")
        if not isinstance(listed, list):
            return None
        names = []
        for i, item in enumerate(listed):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ProtocolError(400, f"outputs[{i}] is not an output with a `name`")
            names.append(item["name"])
        unknown = [n for n in names if n not in {t.name for t in self.outputs}]
        if unknown:
            raise ProtocolError(400, f"outputs: {', '.join(unknown)} not an output of "
                                     f"{self.name} ({', '.join(t.name for t in self.outputs)})")  # fmt: skip
        return names


def validate(model: type[BaseModel], rows: Sequence[Mapping[str, Any]]) -> list[BaseModel]:
    """Each row as ``model`` reads a JSON body (the contract's Input, with the service's strict
    JSON types: a date is its ISO text, an integer field refuses 1.5); a 400 naming the row."""
    validated = []
    for i, row in enumerate(rows):
        try:
            validated.append(model.model_validate_json(json.dumps(row)))
        except ValidationError as exc:
            detail = [{"loc": [i, *e["loc"]], "msg": e["msg"], "type": e["type"]}
                      for e in exc.errors(include_url=False, include_context=False)]  # fmt: skip
            raise ProtocolError(400, f"row {i} breaks the contract of {model.__name__}",
                                detail) from None  # fmt: skip
    return validated


def _split(body: bytes, length: int) -> tuple[bytes, bytes]:
    if not 0 <= length <= len(body):
        raise ProtocolError(400, f"Inference-Header-Content-Length {length} is not within the "
                                 f"body's {len(body)} bytes")  # fmt: skip
    return body[:length], body[length:]


def _values(tensor: Tensor, item: Mapping[str, Any], binary: bytes, offset: int
            ) -> tuple[list[Any], int]:  # fmt: skip
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in ACCEPTED[tensor.datatype]:
        raise ProtocolError(400, f"input {tensor.name!r} is {tensor.datatype}, not {datatype!r}")
    shape = item.get("shape")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
            and len(shape) in (1, 2) and (len(shape) == 1 or shape[1] == 1)):  # fmt: skip
        raise ProtocolError(400, f"input {tensor.name!r}: shape {shape!r} is not [n] (or [n, 1])")
    count = shape[0]
    parameters = item.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise ProtocolError(400, f"input {tensor.name!r}: binary_data_size {size!r} is "
                                     "past the end of the body")  # fmt: skip
        values = _unpack(tensor, datatype, binary[offset : offset + size], count)
        offset += size
    else:
        data = item.get("data")
        while (
            isinstance(data, list) and len(data) == 1 and count != 1 and isinstance(data[0], list)
        ):
            data = data[0]  # [[...]]: a row-major nesting of the same values
        if isinstance(data, list) and data and all(isinstance(d, list) for d in data):
            data = [d[0] if len(d) == 1 else d for d in data]
        if not isinstance(data, list) or len(data) != count:
            raise ProtocolError(400, f"input {tensor.name!r}: `data` must list {count} values "
                                     f"(its shape), got {len(data) if isinstance(data, list) else data!r}")  # fmt: skip
        values = list(data)
    if tensor.json:
        values = [_json_value(tensor, v) for v in values]
    return values, offset


def _unpack(tensor: Tensor, datatype: str, raw: bytes, count: int) -> list[Any]:
    if datatype == "BYTES":
        values, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise ProtocolError(400, f"input {tensor.name!r}: a truncated BYTES element")
            (length,) = struct.unpack_from("<I", raw, at)
            values.append(raw[at + 4 : at + 4 + length].decode("utf-8", "replace"))
            at += 4 + length
    else:
        code = _STRUCT[datatype]
        width = struct.calcsize(code)
        if len(raw) % width:
            raise ProtocolError(400, f"input {tensor.name!r}: {len(raw)} bytes is not a whole "
                                     f"number of {datatype}")  # fmt: skip
        values = list(struct.unpack(f"<{len(raw) // width}{code}", raw))
    if len(values) != count:
        raise ProtocolError(400, f"input {tensor.name!r}: {len(values)} values, shape says {count}")
    return values


def _json_value(tensor: Tensor, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # a JSON client may send the value itself
    try:
        return json.loads(value)
    except ValueError:
        raise ProtocolError(400, f"input {tensor.name!r} holds JSON texts; {value[:40]!r} is "
                                 "not one") from None  # fmt: skip


def _encode(tensor: Tensor, value: Any) -> Any:
    return json.dumps(value) if tensor.json else value


class App:
    """The ASGI app mounted at /v2: health, model metadata and readiness, and infer.

    ``answer(inputs)`` is the service's answer path: one ``(output dict | None, reason | None,
    error message | None)`` per input, counted and logged by the service.
    """

    def __init__(self, model: Model, Input: type[BaseModel], max_rows: int, answer: Any) -> None:
        self.model = model
        self.Input = Input
        self.max_rows = max_rows
        self.answer = answer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        # mounted at /v2: Starlette's Mount keeps the full path and sets root_path (older
        # versions strip the prefix instead)
        root = scope.get("root_path") or "/v2"
        relative = path[len(root) :] if path.startswith(root + "/") else path
        try:
            if relative in ("/health/live", "/health/ready"):
                _method(method, "GET", path)
                key = relative.rsplit("/", 1)[1]
                await _send(send, 200, {key: True})
                return
            action, _ = self.model.route(relative)
            if action == "/infer":
                _method(method, "POST", path)
                await _send(send, 200, await self.infer(scope, receive))
                return
            _method(method, "GET", path)
            if action == "/ready":
                await _send(send, 200, {"name": self.model.name, "ready": True})
            else:
                await _send(send, 200, self.model.metadata())
        except ProtocolError as exc:
            await _send(send, exc.status, exc.body())
        except Exception:  # nb2prod's bug, not the client's: a 500 that says so, never a hang
            logging.getLogger("nb2prod.service").exception("the /v2 route %s failed", path)
            await _send(send, 500, {"error": "internal error in the /v2 route (logged)"})

    async def infer(self, scope: dict[str, Any], receive: Any) -> dict[str, Any]:
        body = await read_body(receive)
        length = _header_length(scope)
        rows, request_id, requested = self.model.rows(body, length)
        if not rows:
            raise ProtocolError(400, "the input tensors hold no rows")
        if len(rows) > self.max_rows:
            raise ProtocolError(400, f"a request takes at most {self.max_rows} rows "
                                     f"([service] max_batch_rows), got {len(rows)}")  # fmt: skip
        inputs = validate(self.Input, rows)
        answers = await self.answer(inputs)
        failed = next((a for a in answers if a[0] is None), None)
        if failed is not None:
            raise ProtocolError(503, failed[2] or "no answer", None)
        return self.model.response(
            [a[0] for a in answers], request_id=request_id, requested=requested,
            degraded=[a[1] for a in answers],
        )  # fmt: skip


def _method(given: str, wanted: str, path: str) -> None:
    if given != wanted and not (wanted == "GET" and given == "HEAD"):
        raise ProtocolError(405, f"{path} answers {wanted}, not {given}")


def _header_length(scope: Mapping[str, Any]) -> int | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == HEADER_LENGTH:
            try:
                return int(value)
            except ValueError:
                raise ProtocolError(
                    400, "Inference-Header-Content-Length is not a number"
                ) from None
    return None


async def _send(send: Any, status: int, payload: Mapping[str, Any]) -> None:
    await send_json(send, status, dumps(payload))


# ---------------------------------------------------------------- the OpenAPI description

_TENSOR = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
    "required": ["name", "datatype", "shape"],
}
INFER_REQUEST = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {"type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
    },
    "required": ["inputs"],
}  # fmt: skip
INFER_RESPONSE = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {
            "degraded": {"type": "boolean"}, "reason": {"type": "string"},
            "degraded_count": {"type": "integer"}}},
        "outputs": {"type": "array", "items": {**_TENSOR, "required": ["name", "datatype", "shape", "data"]}},
    },
    "required": ["model_name", "model_version", "outputs"],
}  # fmt: skip
_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": {"type": "object"}},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["name", "versions", "platform", "inputs", "outputs"],
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "array"}},
    "required": ["error"],
}


def infer_example(model: Model, examples: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """An infer request and its answer made of (Input, Output) pairs (the release's examples)."""
    request = {"inputs": [
        {"name": t.name, "datatype": t.datatype, "shape": [len(examples)],
         "data": [_encode(t, i.get(t.name)) for i, _ in examples]}
        for t in model.inputs
    ]}  # fmt: skip
    answer = model.response([o for _, o in examples], request_id=None, requested=None,
                            degraded=[None] * len(examples))  # fmt: skip
    return request, answer


def paths(model: Model, auth: bool, examples: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
          ) -> dict[str, Any]:  # fmt: skip
    """The /v2 routes of ``model`` for the OpenAPI document (its own name and version)."""

    def reply(description: str, value: Any, example: Any = None) -> dict[str, Any]:
        media: dict[str, Any] = {"schema": value}
        if example is not None:
            media["example"] = example
        return {"description": description, "content": {"application/json": media}}

    def op(name: str, summary: str, ok: Any, *, secured: bool, example: Any = None,
           **more: Any) -> dict[str, Any]:  # fmt: skip
        responses = {"200": reply(summary, ok, example), "404": reply("not a route", _ERROR),
                     **more}  # fmt: skip
        found: dict[str, Any] = {"operationId": name, "summary": summary, "responses": responses}
        if secured and auth:
            responses["401"] = reply("missing or wrong bearer token", _ERROR)
            found["security"] = [{"bearer": []}]
        return found

    base = f"/v2/models/{model.name}"
    request, answer = infer_example(model, examples) if examples else (None, None)
    infer = op("v2_infer", "Open Inference Protocol: one output tensor per Output field",
               INFER_RESPONSE, secured=True, example=answer,
               **{"400": reply("a tensor or a row breaks the contract; the error names it", _ERROR),
                  "413": reply("the body is larger than the release allows", _ERROR),
                  "415": reply("neither JSON nor the binary tensor extension", _ERROR),
                  "503": reply("neither the model nor a fallback could answer", _ERROR)})  # fmt: skip
    body: dict[str, Any] = {"schema": INFER_REQUEST}
    if request is not None:
        body["example"] = request
    infer["requestBody"] = {"required": True, "content": {"application/json": body}}
    live = {"type": "object", "properties": {"live": {"type": "boolean"}}}
    ready = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    model_ready = {"type": "object", "properties": {"name": {"type": "string"},
                                                    "ready": {"type": "boolean"}}}  # fmt: skip
    return {
        "/v2/health/live": {"get": op("v2_live", "the server is live", live, secured=False)},
        "/v2/health/ready": {"get": op("v2_ready", "the server is ready", ready, secured=False)},
        base: {"get": op("v2_model", "the model's metadata", _METADATA, secured=True,
                         example=model.metadata())},
        f"{base}/ready": {"get": op("v2_model_ready", "the model is ready", model_ready,
                                    secured=True)},
        f"{base}/infer": {"post": infer},
    }  # fmt: skip
