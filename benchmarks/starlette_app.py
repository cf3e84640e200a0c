"""The limit of benchmarks/serve.py: the iris model in a bare Starlette app under uvicorn (no
BentoML, auth, metrics, logs, fallback or batching): what the framework-free path costs.

Run: BENCH_RELEASE=RELEASE_DIR uvicorn starlette_app:app (from benchmarks/)
"""

from iris_model import Flower, answer, load
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MODEL = load()
BATCH = TypeAdapter(dict[str, list[Flower]])


async def predict(request: Request) -> JSONResponse:
    flower = Flower.model_validate_json(await request.body())
    return JSONResponse(answer(MODEL, [flower])[0])


async def predict_batch(request: Request) -> JSONResponse:
    inputs = BATCH.validate_json(await request.body())["inputs"]
    return JSONResponse({"results": answer(MODEL, inputs)})


async def readyz(request: Request) -> JSONResponse:
    return JSONResponse({"ready": True})


app = Starlette(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/predict_batch", predict_batch, methods=["POST"]),
        Route("/readyz", readyz),
    ]
)
