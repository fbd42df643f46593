"""The FastAPI application: routes, auth, body limits, error bodies, metrics.

Every client problem becomes a 4xx JSON body ``{"error": {"field", "problem", "status"}}``; an
unexpected exception is logged and answered with a JSON 500, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from polyfuse import __version__
from polyfuse.serve.batching import MicroBatcher
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.inputs import InputError, RowDecoder, Upload, describe_field
from polyfuse.serve.metrics import ServerMetrics
from polyfuse.serve.openapi import request_bodies
from polyfuse.serve.service import ModelService, make_backend

log = logging.getLogger("polyfuse.serve")
OPEN_PATHS = {"/", "/health", "/docs", "/openapi.json", "/docs/oauth2-redirect"}  # no API key needed


MAX_K = 100  # most rows one /search answers


class Searcher:
    """``POST /search``: a search index and the pre-trained model that embeds its queries."""

    def __init__(self, index_dir: str | Path):
        from polyfuse.pretrained import load_pretrained
        from polyfuse.retrieval import SearchIndex

        self.index = SearchIndex.load(index_dir)
        if self.index.model is None:
            raise ValueError(f"the index at {index_dir} does not name the pre-trained model that made it")
        self.source = load_pretrained(self.index.model)

    def search(self, fields: dict[str, Any], limits: Any) -> dict[str, Any]:
        """One query field (``text``, or an ``image`` / ``audio`` upload), ``k``, optional ``modality``."""
        import tempfile

        queries = [kind for kind in ("text", "image", "audio") if kind in fields]
        if len(queries) != 1:
            raise InputError(None, "send one query field: text, image or audio")
        kind = queries[0]
        k = _k(fields.get("k", 10))
        value = fields[kind]
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise InputError("text", "expected a non-empty string")
            if len(value) > limits.max_text_chars:
                raise InputError("text", f"{len(value)} characters; limit {limits.max_text_chars}", 413)
            embedding = self._embed(kind, value, fields.get("modality"))
        else:
            if not isinstance(value, Upload):
                raise InputError(kind, "send the file as a multipart upload")
            if len(value.data) > limits.max_upload_bytes:
                raise InputError(kind, f"{len(value.data)} bytes; limit {limits.max_upload_bytes}", 413)
            suffix = Path(value.filename).suffix or (".png" if kind == "image" else ".wav")
            with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
                handle.write(value.data)
                handle.flush()
                embedding = self._embed(kind, handle.name, fields.get("modality"))
        hits = self.index.search(embedding, k)[0]
        return {
            "modality": self.index.modality,
            "results": [{"id": row, "score": score} for row, score in hits],
        }

    def _embed(self, kind: str, value: str, modality: Any) -> Any:
        from polyfuse.errors import PolyfuseError

        try:
            return self.source.embed_query(kind, value, None if modality is None else str(modality))
        except PolyfuseError as err:
            raise InputError(kind, str(err)) from None


def _k(value: Any) -> int:
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise InputError("k", "expected an integer") from None
    if not 1 <= k <= MAX_K:
        raise InputError("k", f"must be between 1 and {MAX_K}")
    return k


class Server:
    """Everything one app holds: the model service, the request decoder, the batcher, the metrics."""

    def __init__(self, model_dir: str | Path, config: ServeConfig):
        from polyfuse.predictor import load

        self.model_dir, self.config, self.limits = Path(model_dir), config, config.limits
        self.predictor = load(self.model_dir)
        self.service = ModelService(self.predictor, make_backend(self.predictor, self.model_dir, config))
        self.decoder = RowDecoder(self.service.fields, self.limits)
        self.metrics = ServerMetrics()
        self.batcher: MicroBatcher[dict[str, Any], Any] = MicroBatcher(
            self.service.predict, config.max_batch, config.max_wait_ms, self.metrics.batch_size.observe
        )
        self.searcher = Searcher(config.index) if config.index else None

    async def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        return await self._in_time(self.batcher.submit(rows))

    async def explain(self, row: dict[str, Any]) -> dict[str, Any]:
        return await self._in_time(self.batcher.exclusive(lambda: self.service.explain(row)))  # type: ignore[no-any-return]

    async def _in_time(self, work: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(work, self.limits.request_timeout_s)
        except TimeoutError:
            raise InputError(
                None, f"no answer from the model within {self.limits.request_timeout_s} s", 503
            ) from None

    def describe(self) -> dict[str, Any]:
        """``GET /model``: what to send, what comes back, the limits, the test metrics."""
        schema, metrics = self.predictor.schema, self.predictor.metrics
        return {
            "name": self.model_dir.name,
            "polyfuse_version": __version__,
            "modalities": schema.modalities,
            "fields": [describe_field(f, self.limits) for f in self.service.fields],
            "labels": [
                {"column": s.column, "task": s.task, "classes": [str(c) for c in s.classes]}
                for s in schema.labels
            ],
            "fusion": self.predictor.model_config.fusion.name,
            "metrics": {k: metrics[k] for k in ("test", "baselines") if k in metrics},
            "limits": asdict(self.limits),
            "batching": {"max_batch": self.config.max_batch, "max_wait_ms": self.config.max_wait_ms},
            "backend": self.config.backend,
            **({"cascade": self.cascade()} if self.config.budget_ms is not None else {}),
        }

    def cascade(self) -> dict[str, Any]:
        """The modality cascade this server runs: its budget, order and validated threshold."""
        from polyfuse.eval.cascade import threshold_for

        plan, budget = self.predictor.cascade_plan(), float(self.config.budget_ms or 0.0)
        threshold = threshold_for(plan, budget)
        point = next(p for p in plan["curve"] if p["threshold"] == threshold)
        return {"budget_ms": budget, "order": plan["order"], "threshold": threshold, "validation": point}

    def authorised(self, request: Request) -> bool:
        key = self.config.api_key
        if not key or request.url.path in OPEN_PATHS:
            return True
        return hmac.compare_digest(request.headers.get("x-api-key", "").encode(), key.encode())


def create_app(model_dir: str | Path, config: ServeConfig) -> FastAPI:
    server = Server(model_dir, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.batcher.exclusive(server.service.warm_up)
        await server.batcher.start()
        yield
        await server.batcher.stop()

    app = FastAPI(title=f"polyfuse model: {server.model_dir.name}", version=__version__, lifespan=lifespan)
    app.state.server = server
    _add_error_handlers(app)
    _add_routes(app, server)
    _add_guard(app, server, {getattr(route, "path", "") for route in app.routes})
    return app


def _add_guard(app: FastAPI, server: Server, routes: set[str]) -> None:
    """API key, declared body size, a JSON 500 for bugs, and the metrics of every request (by
    route path; any other path counts as "other", so clients cannot grow the label set)."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        length = _declared_length(request.headers.get("content-length", "0"))
        if not server.authorised(request):
            response: Response = _error(InputError(None, "missing or wrong X-API-Key header", 401))
        elif length is None:
            response = _error(InputError(None, "bad Content-Length header", 400))
        elif length > server.limits.max_request_bytes:
            response = _error(
                InputError(None, f"body of {length} bytes; limit {server.limits.max_request_bytes}", 413)
            )
        else:
            try:
                response = await call_next(request)
            except Exception:  # a bug, not the client's input: logged, answered, the server goes on
                log.exception("unexpected error on %s", request.url.path)
                response = _error(InputError(None, "internal error (logged on the server)", 500))
        path = request.url.path if request.url.path in routes else "other"
        server.metrics.observe(path, response.status_code, time.perf_counter() - start)
        return response


def _declared_length(header: str) -> int | None:
    """A Content-Length header's value; None unless ASCII digits ("²".isdigit() is True, and int()
    refuses strings of over 4300 digits: both were 500s). Absurdly long values count as huge."""
    if not (header.isascii() and header.isdigit()):
        return None
    return int(header) if len(header) <= 18 else 10**18


def _add_error_handlers(app: FastAPI) -> None:
    async def client_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InputError)
        return _error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(InputError(None, str(exc.detail), exc.status_code))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return _error(InputError(field, str(first.get("msg", "invalid request"))))

    app.add_exception_handler(InputError, client_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _add_routes(app: FastAPI, server: Server) -> None:
    bodies = request_bodies(server.service.fields, server.limits)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(
            resources.files("polyfuse.serve").joinpath("page.html").read_text(encoding="utf-8")
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": server.model_dir.name}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return server.describe()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post("/predict", openapi_extra=bodies["single"])
    async def predict(request: Request) -> dict[str, Any]:
        start = time.perf_counter()
        row = server.decoder.row(await read_fields(request, server))
        (result,) = await server.predict([row])
        return _answer(result, start)

    @app.post("/predict/batch", openapi_extra=bodies["batch"])
    async def predict_batch(request: Request) -> dict[str, Any]:
        start = time.perf_counter()
        rows = batch_rows(await read_json(request, server), server)
        results = await server.predict(rows)
        for i, result in enumerate(results):
            if isinstance(result, InputError):
                raise InputError(
                    f"rows[{i}].{result.field}" if result.field else f"rows[{i}]", result.problem
                )
        return {"results": results, "latency_ms": _ms(start)}

    @app.post("/explain", openapi_extra=bodies["single"])
    async def explain(request: Request) -> dict[str, Any]:
        start = time.perf_counter()
        row = server.decoder.row(await read_fields(request, server))
        return _answer(await server.explain(row), start)

    @app.post("/search")
    async def search(request: Request) -> dict[str, Any]:
        """The indexed rows nearest to a text (JSON or form field ``text``) or an uploaded ``image`` /
        ``audio`` file; ``k`` rows (default 10). Served when ``polyfuse serve --index`` names an index."""
        start = time.perf_counter()
        searcher = server.searcher
        if searcher is None:
            raise InputError(None, "this server has no search index (polyfuse serve --index IDX)", 404)
        fields = await read_fields(request, server)
        found = await server._in_time(
            server.batcher.exclusive(lambda: searcher.search(fields, server.limits))
        )
        return {**found, "latency_ms": _ms(start)}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read up to ``limit`` bytes (a chunked body declares no length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(None, f"body over the limit of {limit} bytes", 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # the form parser reads the body from here
    return body


async def read_json(request: Request, server: Server) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise InputError(None, "send application/json", 415)
    try:
        return json.loads(await read_body(request, server.limits.max_request_bytes))
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, an int of > 4300 digits
        raise InputError(None, "malformed JSON body", 400) from None


async def read_fields(request: Request, server: Server) -> dict[str, Any]:
    """A request's fields: a JSON object, or a multipart / urlencoded form (files as ``Upload``)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        body = await read_json(request, server)
        if not isinstance(body, dict):
            raise InputError(None, f"expected a JSON object of fields, got {type(body).__name__}")
        return body
    if not kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise InputError(None, "send multipart/form-data or application/json", 415)
    await read_body(request, server.limits.max_request_bytes)
    try:
        # The body is already bounded; the per-field limits (text length: a 413 naming the field)
        # then apply, not python-multipart's part size (a 400 naming nothing).
        form = await request.form(max_files=16, max_fields=256, max_part_size=server.limits.max_request_bytes)
        items = form.multi_items()
    except Exception as exc:  # python-multipart and Starlette raise several types for bad bodies
        raise InputError(None, f"malformed form body ({str(exc)[:120] or type(exc).__name__})", 400) from None
    fields: dict[str, Any] = {}
    for name, value in items:
        if name in fields:
            raise InputError(name, "sent more than once")
        fields[name] = (
            Upload(await value.read(), value.filename or "") if isinstance(value, UploadFile) else value
        )
    return fields


def batch_rows(body: Any, server: Server) -> list[dict[str, Any]]:
    """``{"rows": [fields, ...]}`` (or a bare list) -> validated rows."""
    rows = body.get("rows") if isinstance(body, dict) else body
    if not isinstance(rows, list) or not rows:
        raise InputError("rows", "expected a non-empty list of field objects")
    if len(rows) > server.limits.max_batch_rows:
        raise InputError("rows", f"{len(rows)} rows; limit {server.limits.max_batch_rows}", 413)
    out = []
    for i, fields in enumerate(rows):
        if not isinstance(fields, dict):
            raise InputError(f"rows[{i}]", f"expected an object of fields, got {type(fields).__name__}")
        out.append(server.decoder.row(fields, prefix=f"rows[{i}]."))
    return out


def _answer(result: Any, start: float) -> dict[str, Any]:
    if isinstance(result, InputError):
        raise result
    return {**result, "latency_ms": _ms(start)}


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _error(exc: InputError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


ENV = "POLYFUSE_SERVE"  # model directory and config, for the worker processes uvicorn starts


def serve(model_dir: str | Path, host: str, port: int, workers: int, config: ServeConfig) -> None:
    """Run uvicorn: one process, or ``workers`` processes each with its model and batcher."""
    import os

    import uvicorn

    if workers <= 1:
        uvicorn.run(create_app(model_dir, config), host=host, port=port, log_level="warning")
        return
    os.environ[ENV] = json.dumps({"model_dir": str(model_dir), "config": asdict(config)})
    uvicorn.run(
        "polyfuse.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )


def app_from_env() -> FastAPI:
    """The app of a uvicorn worker process, from what ``serve`` put in the environment."""
    import os

    from polyfuse.serve.config import Limits

    spec = json.loads(os.environ[ENV])
    config = spec["config"]
    return create_app(spec["model_dir"], ServeConfig(**{**config, "limits": Limits(**config["limits"])}))
