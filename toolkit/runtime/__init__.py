"""The serving runtime of every release: what a generated service runs besides the notebook's code.

A release carries an exact copy of this package (``service/runtime/``, each file's sha256 in
release.json and in ``service/metadata.json``), so a bento needs nothing from nb2prod at run time.
It may import only what a bento has: the standard library, bentoml, pydantic, prometheus_client,
starlette and numpy; never nb2prod's packaging code (``make lint`` enforces it with import-linter).

| module | what |
| --- | --- |
| ``schema`` | the typed files a release carries (model.json, metadata.json, monitoring.json) |
| ``model`` | load the hashed model, run preprocess -> predict -> postprocess, validate Output |
| ``guard`` | fallback decisions (timeout, circuit breaker, kill switch, confidence) and batching |
| ``answer`` | the answer path, one for the service and batch scoring: guard, model, fallback, Output |
| ``auth`` | bearer token and JSON-only bodies (ASGI middlewares) |
| ``limits`` | request bodies: size limit, batch length before validation, strict JSON types |
| ``routes`` | the routes, the open ones, bounded endpoint labels for BentoML's metrics |
| ``telemetry`` | JSON logs, Prometheus series, drift scores, the request middleware |
| ``openapi`` | the OpenAPI 3.1 document |
| ``startup`` | when a worker started, imported the service and loaded the model (one log line) |
| ``asgi`` | reading a request body and sending a JSON one, for the service's own ASGI apps |
| ``v1`` | the /v1 routes as one ASGI app, and the fast lane outside BentoML's middlewares |
| ``v2`` | the Open Inference Protocol (/v2) |
| ``signature`` | the start check of ``release.sig`` when a public key is configured |
| ``app`` | the service's routes around the answer path; the generated ``service.py`` declares them |
"""
