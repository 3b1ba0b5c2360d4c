"""`ticket-router serve`: the router behind HTTP (FastAPI + uvicorn), with dynamic micro-batching.

Endpoints: `POST /v1/route` (tickets in, one `predict` record per ticket out, in input order), `GET /healthz`,
`GET /v1/model` (tasks, labels, thresholds, version), `GET /metrics` (Prometheus text) and the OpenAPI docs at
`/docs`. Requests wait in one asyncio queue; one worker takes everything that arrived within `max_wait_ms` of the
first request (up to `max_batch` tickets), routes it as one batch in a worker thread so that the event loop keeps
accepting requests, and hands each request its records. Under load, requests that arrive while a batch runs make up
the next batch, so the batch size follows the load. uvicorn stops accepting on SIGTERM and lets the requests in
flight finish (up to `--graceful-timeout` s) before the worker stops.

FastAPI, uvicorn and prometheus-client are the optional `serve` extra: `pip install "ticket_router[serve]"`.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at run time.
import argparse
import asyncio
import contextlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "ticket_router[serve]"'
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PATHS = ("/v1/route", "/v1/model", "/healthz", "/metrics")


@dataclass
class ServeSettings:
    # Tickets per encoder batch; a micro-batch closes when it holds this many. Small on CPU: a batch is padded to
    # its longest ticket, so at concurrency 32 batches of 8 served 38.9 tickets/s against 28.7 for 32 (int8).
    max_batch: int = 8
    max_wait_ms: float = 2.0  # how long the first request of a micro-batch waits for others
    max_tickets: int = 256  # per request (413 beyond)
    max_body_bytes: int = 2 * 1024 * 1024  # per request (413 beyond)

    def __post_init__(self):
        if self.max_batch < 1 or self.max_tickets < 1 or self.max_body_bytes < 1 or self.max_wait_ms < 0:
            raise InputError(f"serve settings must be positive: {self}")


class RequestError(Exception):
    """A request the service refuses: HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _require_packages() -> None:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise InputError(f"{error.name} is not installed: {INSTALL_HINT}") from None


class _Tickets:
    """A list of ticket dicts seen as a table (column_names, column lists), for `data.join_text_columns`."""

    def __init__(self, tickets: list[dict], columns: list[str]):
        self.column_names = columns
        self._tickets = tickets

    def __getitem__(self, column: str) -> list:
        return [ticket.get(column) for ticket in self._tickets]


def ticket_texts(payload: Any, text_columns: list[str], max_tickets: int) -> tuple[list[str], list | None]:
    """Texts (and ids, when the tickets carry them) of a request body; RequestError when it is not usable."""
    from .data import join_text_columns

    if not isinstance(payload, dict) or ("tickets" in payload) == ("text" in payload):
        raise RequestError(422, 'expected a JSON object with "tickets": [{...}, ...] or "text": "..."')
    if "text" in payload:
        if not isinstance(payload["text"], str) or not payload["text"].strip():
            raise RequestError(422, '"text" must be a non-empty string')
        return [payload["text"]], None
    tickets = payload["tickets"]
    if not isinstance(tickets, list) or not tickets:
        raise RequestError(422, '"tickets" must be a non-empty list of objects')
    if len(tickets) > max_tickets:
        raise RequestError(413, f"{len(tickets)} tickets: at most {max_tickets} per request")
    for i, ticket in enumerate(tickets):
        if not isinstance(ticket, dict):
            raise RequestError(422, f"tickets[{i}]: expected an object with the text columns {text_columns}")
        bad = [c for c in text_columns if not isinstance(ticket.get(c), (str, type(None)))]
        if bad:
            raise RequestError(422, f"tickets[{i}].{bad[0]}: expected a string")
    texts = join_text_columns(_Tickets(tickets, text_columns), text_columns, "request")
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    if empty:
        raise RequestError(422, f"tickets[{empty[0]}]: no text in any of the text columns {text_columns}")
    ids = [ticket.get("id") for ticket in tickets] if any("id" in t for t in tickets) else None
    return texts, ids


class Metrics:
    """Prometheus metrics in the app's own registry (no process-global state)."""

    def __init__(self, task_names: list[str]):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("ticket_router_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram("ticket_router_request_seconds", "Request latency", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tickets = Counter("ticket_router_tickets", "Tickets routed", registry=self.registry)
        self.batch_size = Histogram("ticket_router_batch_tickets", "Tickets per micro-batch run by the router",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("ticket_router_batch_requests", "Requests coalesced into one micro-batch",
                                        buckets=BATCH_BUCKETS, registry=self.registry)
        self.decisions = Counter("ticket_router_decisions", "Routing decisions per head (routing policy)",
                                 ["task", "decision"], registry=self.registry)
        self.routes = Counter("ticket_router_routes", "Tickets per overall decision (routing policy)", ["route"],
                              registry=self.registry)
        self.task_names = task_names

    def count_decisions(self, records: list[dict]) -> None:
        """Per head `decision` and the ticket's `route` ("auto"/"review"), where a routing policy adds them."""
        route_key = "_route" if "route" in self.task_names else "route"
        for record in records:
            for task in self.task_names:
                decision = record.get(task, {}).get("decision")
                if decision is not None:
                    self.decisions.labels(task, str(decision)).inc()
            if record.get(route_key) is not None:
                self.routes.labels(str(record[route_key])).inc()


class MicroBatcher:
    """One asyncio queue and one worker: concurrent requests are routed together, in one router call."""

    def __init__(self, router, settings: ServeSettings, metrics: Metrics):
        self.router, self.settings, self.metrics = router, settings, metrics
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router")
        self.worker: asyncio.Task | None = None

    def start(self) -> None:
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.executor.shutdown(wait=True)

    @property
    def alive(self) -> bool:
        return self.worker is not None and not self.worker.done()

    async def route(self, texts: list[str]) -> list[dict]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _collect(self) -> list[tuple[list[str], asyncio.Future]]:
        """The first waiting request, then whatever arrives within max_wait_ms, up to max_batch tickets."""
        batch = [await self.queue.get()]
        size = len(batch[0][0])
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while size < self.settings.max_batch:
            try:
                item = self.queue.get_nowait() if self.queue.qsize() else \
                    await asyncio.wait_for(self.queue.get(), max(0.0, deadline - time.monotonic()))
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            batch.append(item)
            size += len(item[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            texts = [text for item_texts, _ in batch for text in item_texts]
            self.metrics.batch_size.observe(len(texts))
            self.metrics.batch_requests.observe(len(batch))
            try:
                records = await loop.run_in_executor(self.executor, self._route, texts)
            except Exception as error:  # noqa: BLE001 - a failed batch fails its requests, not the service
                logger.exception("routing a batch of %d ticket(s) failed", len(texts))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for item_texts, future in batch:
                if not future.done():  # a client that went away leaves a cancelled future
                    future.set_result(records[start:start + len(item_texts)])
                start += len(item_texts)

    def _route(self, texts: list[str]) -> list[dict]:
        records = self.router.route(texts, batch_size=self.settings.max_batch)
        self.metrics.tickets.inc(len(texts))
        self.metrics.count_decisions(records)
        return records


def model_info(router, model_dir: str | Path) -> dict:
    """`GET /v1/model`: what the service routes with."""
    from . import __version__

    manifest = getattr(router.model, "manifest", None)
    info = {
        "model": str(model_dir), "version": __version__,
        "backend": "onnxruntime" if manifest is not None else "torch",
        "quantization": manifest.quantization if manifest is not None else "none",
        "text_columns": router.text_columns, "max_length": router.max_length,
        "lexical_weight": router.lexical_weight,
        "tasks": [{"name": s.name, "column": s.column, "labels": list(s.labels)} for s in router.specs],
    }
    policy = Path(model_dir) / "policy.json"  # the auto/review policy, where the model has one (issue 13)
    if policy.is_file():
        heads = json.loads(policy.read_text()).get("heads", {})
        info["thresholds"] = {task: head.get("threshold") for task, head in heads.items()}
        # A head whose target is out of reach marks its tickets "review" without voting on the route; max_target
        # is the precision it can promise instead.
        info["votes"] = {task: head.get("votes", True) for task, head in heads.items()}
        info["max_target"] = {task: head.get("max_target") for task, head in heads.items()}
    return info


def _id_key(router) -> str:
    # As `predict` writes it: "id", or "input_id" when a task is itself called "id".
    return "input_id" if "id" in router.task_names else "id"


def create_app(router, model_dir: str | Path = "", settings: ServeSettings | None = None):
    """The FastAPI app serving `router`; the micro-batching worker runs for the app's lifespan."""
    _require_packages()
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    settings = settings or ServeSettings()
    metrics = Metrics(router.task_names)
    info = model_info(router, model_dir)
    batcher = MicroBatcher(router, settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="ticket_router", version=info["version"], lifespan=lifespan,
                  description="Route support tickets: one record per ticket, as `ticket-router predict` writes it.")
    app.state.batcher, app.state.metrics, app.state.settings = batcher, metrics, settings

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        path = request.url.path if request.url.path in _PATHS else "other"
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(RequestError)
    async def refuse(request: Request, error: RequestError):
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.post("/v1/route", openapi_extra=_route_schema(router))
    async def route(request: Request) -> dict:
        """Route tickets: `{"tickets": [{"id": ..., <text columns>: ...}]}` or `{"text": "..."}`."""
        payload = _parse_json(await _read_body(request, settings.max_body_bytes))
        texts, ids = ticket_texts(payload, router.text_columns, settings.max_tickets)
        records = await batcher.route(texts)
        if ids is not None:
            key = _id_key(router)
            records = [{key: ids[i]} | record for i, record in enumerate(records)]
        return {"results": records}

    @app.get("/healthz")
    async def healthz():
        if not batcher.alive:
            return JSONResponse({"status": "worker stopped"}, status_code=503)
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model() -> dict:
        return info

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {declared} bytes: at most {limit}")
    body = b""
    async for chunk in request.stream():  # a chunked body has no declared length: count as it comes
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"request body over {limit} bytes")
    return body


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(400, f"malformed JSON: {error}") from None


def _route_schema(router) -> dict:
    """The request body for the OpenAPI docs (the handler parses the body itself, to enforce the byte limit)."""
    ticket = {"type": "object", "properties": {"id": {}} | {c: {"type": "string"} for c in router.text_columns}}
    schema = {"type": "object", "properties": {"tickets": {"type": "array", "items": ticket},
                                               "text": {"type": "string"}}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def cmd_serve(args: argparse.Namespace) -> int:
    _require_packages()
    # Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. Beside the event loop on a busy CPU,
    # spinning made the PyTorch service 6x slower (1.6 vs 9.8 tickets/s at concurrency 1 here; BENCHMARKS.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from .router import Router

    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_tickets=args.max_tickets,
                             max_body_bytes=args.max_body_bytes)
    router = Router.from_pretrained(args.model)
    if args.lexical_weight is not None:
        router.lexical_weight = args.lexical_weight
    app = create_app(router, args.model, settings)
    # uvicorn handles SIGTERM/SIGINT: it stops accepting, lets in-flight requests finish, then ends the lifespan.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                access_log=args.access_log, timeout_graceful_shutdown=args.graceful_timeout)
    return 0


def add_serve_command(commands) -> None:
    """`ticket-router serve`: parser and handler (cli.py only calls this)."""
    serve = commands.add_parser("serve", help="Serve the router over HTTP (POST /v1/route), with micro-batching.")
    serve.add_argument("--model", required=True, help="Model directory (PyTorch) or export directory (ONNX).")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    defaults = ServeSettings()
    serve.add_argument("--max-batch", type=int, default=defaults.max_batch, help="Tickets per micro-batch.")
    serve.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms,
                       help="How long a request waits for others to share its batch.")
    serve.add_argument("--max-tickets", type=int, default=defaults.max_tickets, help="Tickets per request (413 beyond).")
    serve.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes, help="413 beyond.")
    serve.add_argument("--lexical-weight", type=float, help="Share of the lexical heads (0: encoder heads alone).")
    serve.add_argument("--graceful-timeout", type=int, default=30, help="Seconds in-flight requests get on SIGTERM.")
    serve.add_argument("--access-log", action="store_true", help="Log every request (uvicorn access log).")
    serve.set_defaults(func=cmd_serve)
